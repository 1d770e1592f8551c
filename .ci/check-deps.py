#!/usr/bin/env python3
"""Checks the dependency rule of ARCHITECTURE.md on `cargo metadata`.

* framework/core depends on no internal crate;
* other framework crates depend only on core (the facade, framework/selfman, re-exports the
  framework and may depend on any framework crate);
* components/ports depends only on core;
* a component crate (components/<x>) depends only on core and ports; runtime, net and sim (or
  anything else internal) are allowed as dev-dependencies only;
* systems, examples, tests and benches may depend on anything;
* a crate's dev-dependency on itself only turns on its own features for its tests (the
  `flaws` of docs/decisions/011-deliberate-bugs-are-test-only.md) and is always allowed.

`--self-test` runs the checker on synthetic workspaces, one per rule, and fails unless every
violation is caught and the legal layout passes.
"""
import json
import os
import subprocess
import sys

FACADE = "framework/selfman"


def role(rel):
    parts = rel.split("/")
    if parts[0] == "framework":
        return "core" if rel == "framework/core" else ("facade" if rel == FACADE else "framework")
    if parts[0] == "components":
        return "ports" if rel == "components/ports" else "component"
    return "free"


def violations(packages, root):
    """packages: list of {name, manifest_path, dependencies: [{name, path?, kind}]}"""
    by_name = {}
    for p in packages:
        rel = os.path.relpath(os.path.dirname(p["manifest_path"]), root)
        by_name[p["name"]] = rel
    errors = []
    for p in packages:
        rel = by_name[p["name"]]
        r = role(rel)
        for d in p["dependencies"]:
            if d["name"] not in by_name or d.get("path") is None:
                continue  # external crate
            dev = d.get("kind") == "dev"
            if dev and d["name"] == p["name"]:
                continue  # its own features, for its own tests
            target = by_name[d["name"]]
            tr = role(target)
            ok = True
            if r == "core":
                ok = dev and tr != "component"
            elif r == "framework":
                ok = tr == "core" or (dev and tr in ("framework", "facade"))
            elif r == "facade":
                ok = tr in ("core", "framework")
            elif r == "ports":
                ok = tr == "core" or dev
            elif r == "component":
                ok = tr in ("core", "ports") or (dev and tr != "component")
            if not ok:
                kind = "dev-dependency" if dev else "dependency"
                errors.append(f"{p['name']} ({rel}) has a {kind} on {d['name']} ({target}): "
                              f"not allowed for a {r} crate")
    return errors


def metadata():
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                         check=True, capture_output=True, text=True).stdout
    m = json.loads(out)
    return m["packages"], m["workspace_root"]


def self_test():
    root = "/w"

    def pkg(name, rel, deps):
        return {"name": name, "manifest_path": f"{root}/{rel}/Cargo.toml",
                "dependencies": [{"name": n, "path": "x", "kind": k} for n, k in deps]}

    base = [
        pkg("selfman-core", "framework/core", [("selfman-runtime", "dev")]),
        pkg("selfman-runtime", "framework/runtime", [("selfman-core", None)]),
        pkg("selfman-sim", "framework/sim", [("selfman-core", None)]),
        pkg("selfman", FACADE, [("selfman-core", None), ("selfman-runtime", None)]),
        pkg("selfman-ports", "components/ports", [("selfman-core", None)]),
        pkg("selfman-fd", "components/failure-detector",
            [("selfman-core", None), ("selfman-ports", None), ("selfman-sim", "dev"),
             ("selfman-fd", "dev")]),
        pkg("selfman-node", "systems/node", [("selfman-fd", None), ("selfman", None)]),
    ]
    assert violations(base, root) == [], violations(base, root)
    bad = [
        ("core depends on runtime", 0, ("selfman-runtime", None)),
        ("runtime depends on sim", 1, ("selfman-sim", None)),
        ("ports depends on runtime", 4, ("selfman-runtime", None)),
        ("component depends on runtime", 5, ("selfman-runtime", None)),
        ("component depends on another component", 5, ("selfman-other", None)),
        ("component dev-depends on another component", 5, ("selfman-other", "dev")),
    ]
    for what, idx, dep in bad:
        pkgs = json.loads(json.dumps(base))
        if dep[0] == "selfman-other":
            pkgs.append(pkg("selfman-other", "components/other", [("selfman-core", None)]))
        pkgs[idx]["dependencies"].append({"name": dep[0], "path": "x", "kind": dep[1]})
        found = violations(pkgs, root)
        if not found:
            print(f"self-test FAILED: '{what}' was not caught")
            return 1
    print(f"dependency-rule self-test: legal layout passes, {len(bad)} violations caught")
    return 0


def main():
    if "--self-test" in sys.argv:
        return self_test()
    packages, root = metadata()
    errors = violations(packages, root)
    for e in errors:
        print("dependency rule violated:", e)
    if errors:
        return 1
    print(f"dependency rule holds for {len(packages)} workspace crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
