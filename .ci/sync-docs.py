#!/usr/bin/env python3
"""Rewrites the Rust snippets of README.md and docs/*.md from the example regions they quote.

A snippet is a ```rust block preceded by `<!-- include: path#anchor -->`; its content becomes the
lines between `// ANCHOR: anchor` and `// ANCHOR_END: anchor` in `path` (other anchor lines
dropped, common indentation removed). `examples/tests/docs_sync.rs` checks the same rule; run
this after changing an example.
"""
import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"^<!-- include: (\S+)#(\S+) -->\s*$")


def region(path, anchor):
    lines = open(os.path.join(ROOT, path)).read().split("\n")
    out, inside = [], False
    for line in lines:
        s = line.strip()
        if s == f"// ANCHOR: {anchor}":
            inside = True
            continue
        if s == f"// ANCHOR_END: {anchor}":
            break
        if inside and not (s.startswith("// ANCHOR:") or s.startswith("// ANCHOR_END:")):
            out.append(line)
    indent = min((len(l) - len(l.lstrip()) for l in out if l.strip()), default=0)
    return [l[indent:] if l.strip() else "" for l in out]


def sync(doc):
    lines = open(doc).read().split("\n")
    out, i, changed = [], 0, False
    while i < len(lines):
        out.append(lines[i])
        m = MARKER.match(lines[i])
        if m and i + 1 < len(lines) and lines[i + 1].startswith("```rust"):
            out.append(lines[i + 1])
            j = i + 2
            while j < len(lines) and lines[j] != "```":
                j += 1
            new = region(m.group(1), m.group(2))
            changed |= new != lines[i + 2:j]
            out.extend(new)
            i = j
            continue
        i += 1
    if changed:
        open(doc, "w").write("\n".join(out))
    return changed


docs = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
for d in docs:
    if sync(d):
        print("updated", os.path.relpath(d, ROOT))
