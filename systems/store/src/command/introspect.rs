//! Replies that describe the command table: `COMMAND`, `COMMAND INFO`, `COMMAND COUNT`,
//! `COMMAND DOCS` and the `HELP` subcommands, in the shapes Redis 7 gives them (which redis-cli
//! and redis-py read).
//!
//! Everything here is a function of [`COMMANDS`]; nothing is written by hand twice.

use crate::command::table::{lookup, Arg, ArgType, CommandSpec, Flags, COMMANDS};
use crate::resp::Reply;

/// The entry named `name` (any case), a subcommand written `container|sub`.
pub fn lookup_full(name: &[u8]) -> Option<&'static CommandSpec> {
    match name.iter().position(|&b| b == b'|') {
        Some(bar) => lookup(&name[..bar])?.subcommand(&name[bar + 1..]),
        None => lookup(name),
    }
}

fn simple(s: &str) -> Reply {
    Reply::Simple(s.to_owned())
}

fn simple_set<'a>(names: impl IntoIterator<Item = &'a str>) -> Reply {
    Reply::Set(names.into_iter().map(simple).collect())
}

fn map(pairs: Vec<(&str, Reply)>) -> Reply {
    Reply::Map(pairs.into_iter().map(|(k, v)| (Reply::bulk(k), v)).collect())
}

/// The ACL categories of a command, derived from its flags and group.
fn acl_categories(spec: &CommandSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    if spec.flags.contains(Flags::WRITE) {
        out.push("@write");
    }
    if spec.flags.contains(Flags::READONLY) {
        out.push("@read");
    }
    if spec.flags.contains(Flags::ADMIN) {
        out.push("@admin");
    }
    out.extend(spec.group.acl_category());
    out.push(if spec.flags.contains(Flags::FAST) { "@fast" } else { "@slow" });
    if spec.flags.contains(Flags::ADMIN) {
        out.push("@dangerous");
    }
    out
}

/// The key specification of a command with keys: found by index, then a range.
fn key_specs(spec: &CommandSpec) -> Reply {
    let k = spec.keys;
    if k.first == 0 {
        return Reply::Array(Vec::new());
    }
    let flags: &[&str] = if spec.flags.contains(Flags::WRITE) {
        if spec.name == "del" {
            &["RM", "delete"]
        } else {
            &["RW", "update"]
        }
    } else if spec.flags.contains(Flags::READONLY) {
        &["RO", "access"]
    } else {
        &["RO"]
    };
    let lastkey = if k.last < 0 { k.last } else { k.last - k.first };
    Reply::Array(vec![map(vec![
        ("flags", simple_set(flags.iter().copied())),
        (
            "begin_search",
            map(vec![
                ("type", Reply::bulk("index")),
                ("spec", map(vec![("index", Reply::Integer(i64::from(k.first)))])),
            ]),
        ),
        (
            "find_keys",
            map(vec![
                ("type", Reply::bulk("range")),
                (
                    "spec",
                    map(vec![
                        ("lastkey", Reply::Integer(i64::from(lastkey))),
                        ("keystep", Reply::Integer(i64::from(k.step))),
                        ("limit", Reply::Integer(0)),
                    ]),
                ),
            ]),
        ),
    ])])
}

/// One command's `COMMAND INFO` entry: name, arity, flags, first key, last key, step, ACL
/// categories, tips, key specifications, subcommands.
pub fn info(spec: &CommandSpec) -> Reply {
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Integer(i64::from(spec.arity)),
        simple_set(spec.flags.names()),
        Reply::Integer(i64::from(spec.keys.first)),
        Reply::Integer(i64::from(spec.keys.last)),
        Reply::Integer(i64::from(spec.keys.step)),
        simple_set(acl_categories(spec)),
        Reply::Array(Vec::new()),
        key_specs(spec),
        Reply::Array(spec.subcommands.iter().map(info).collect()),
    ])
}

/// `COMMAND` and `COMMAND INFO` with no names: every command.
pub fn info_all() -> Reply {
    Reply::Array(COMMANDS.iter().map(info).collect())
}

/// `COMMAND INFO name...`: an entry per name, null for a name the table lacks.
pub fn info_of(names: &[Vec<u8>]) -> Reply {
    Reply::Array(names.iter().map(|n| lookup_full(n).map_or(Reply::Null, info)).collect())
}

/// `COMMAND COUNT`.
pub fn count() -> Reply {
    Reply::Integer(i64::try_from(COMMANDS.len()).unwrap_or(i64::MAX))
}

fn arg_doc(arg: &Arg) -> Reply {
    let mut pairs = vec![("name", Reply::bulk(arg.name)), ("type", Reply::bulk(arg.kind.name()))];
    if arg.kind == ArgType::Key {
        pairs.push(("key_spec_index", Reply::Integer(0)));
    }
    if let Some(token) = arg.token {
        pairs.push(("token", Reply::bulk(token)));
    }
    let flags: Vec<&str> = [(arg.optional, "optional"), (arg.multiple, "multiple")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
    if !flags.is_empty() {
        pairs.push(("flags", simple_set(flags)));
    }
    if !arg.arguments.is_empty() {
        pairs.push(("arguments", Reply::Array(arg.arguments.iter().map(arg_doc).collect())));
    }
    map(pairs)
}

/// One command's `COMMAND DOCS` map: summary, since, group, complexity, and its arguments and
/// subcommands where it has them.
pub fn docs(spec: &CommandSpec) -> Reply {
    let mut pairs = vec![
        ("summary", Reply::bulk(spec.summary)),
        ("since", Reply::bulk(spec.since)),
        ("group", Reply::bulk(spec.group.name())),
        ("complexity", Reply::bulk(spec.complexity)),
    ];
    if !spec.arguments.is_empty() {
        pairs.push(("arguments", Reply::Array(spec.arguments.iter().map(arg_doc).collect())));
    }
    if !spec.subcommands.is_empty() {
        let subs = spec.subcommands.iter().map(|s| (Reply::bulk(s.name), docs(s))).collect();
        pairs.push(("subcommands", Reply::Map(subs)));
    }
    map(pairs)
}

/// `COMMAND DOCS [name...]`: a map from each known name to its documentation (every command
/// when no name is given; unknown names left out).
pub fn docs_of(names: &[Vec<u8>]) -> Reply {
    let entries: Vec<(Reply, Reply)> = if names.is_empty() {
        COMMANDS.iter().map(|s| (Reply::bulk(s.name), docs(s))).collect()
    } else {
        names
            .iter()
            .filter_map(|n| lookup_full(n))
            .map(|s| (Reply::bulk(s.name), docs(s)))
            .collect()
    };
    Reply::Map(entries)
}

/// A container's `HELP`: its usage line, then each subcommand and what it does (from the
/// table), `HELP` last, as Redis lays it out.
pub fn help(container: &CommandSpec) -> Reply {
    let upper = container.name.to_ascii_uppercase();
    let mut lines =
        vec![format!("{upper} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")];
    if container.arity == -1 {
        lines.push("(no subcommand)".to_owned());
        lines.push(format!("    {}", container.summary));
    }
    let mut subs: Vec<&CommandSpec> = container.subcommands.iter().collect();
    subs.sort_by_key(|s| s.name.ends_with("|help")); // HELP last
    for sub in subs {
        let name = sub.name.split_once('|').map_or(sub.name, |p| p.1).to_ascii_uppercase();
        let args: Vec<String> = sub.arguments.iter().map(|a| format!("<{}>", a.name)).collect();
        lines.push(if args.is_empty() { name } else { format!("{name} {}", args.join(" ")) });
        lines.push(format!("    {}", sub.summary));
    }
    Reply::Array(lines.into_iter().map(Reply::Simple).collect())
}

#[cfg(test)]
mod tests {
    use super::{count, docs_of, help, info, info_of, lookup_full};
    use crate::command::table::lookup;
    use crate::resp::{Protocol, Reply};

    fn enc(r: &Reply) -> String {
        let mut out = Vec::new();
        r.encode(Protocol::Resp2, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn info_of_get_has_redis_shape() {
        // The same bytes Redis 7.0 answers for `COMMAND INFO get`.
        let want = "*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n\
            *3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n\
            +access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n\
            *2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n\
            $4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n\
            :0\r\n*0\r\n";
        assert_eq!(enc(&info(lookup(b"get").unwrap())), want);
    }

    #[test]
    fn lookups_by_full_name() {
        assert_eq!(lookup_full(b"CONFIG|get").map(|s| s.name), Some("config|get"));
        assert!(lookup_full(b"config|set").is_none());
        assert!(lookup_full(b"|").is_none());
        assert_eq!(
            info_of(&[b"nope".to_vec(), b"ping".to_vec()]),
            Reply::Array(vec![Reply::Null, info(lookup(b"ping").unwrap())])
        );
        assert!(matches!(count(), Reply::Integer(n) if n == 45));
    }

    #[test]
    fn docs_leave_out_unknown_names_and_nest_subcommands() {
        let Reply::Map(entries) = docs_of(&[b"get".to_vec(), b"nope".to_vec(), b"client".to_vec()])
        else {
            panic!("not a map")
        };
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, Reply::bulk("get"));
        let get = enc(&entries[0].1);
        assert!(get.starts_with("*10\r\n$7\r\nsummary\r\n"), "{get}");
        assert!(
            get.contains("$9\r\narguments\r\n*1\r\n*6\r\n$4\r\nname\r\n$3\r\nkey\r\n"),
            "{get}"
        );
        assert_eq!(entries[1].0, Reply::bulk("client"));
        assert!(enc(&entries[1].1).contains("$11\r\nsubcommands\r\n"));
        assert!(enc(&entries[1].1).contains("client|setname"));
    }

    #[test]
    fn help_lists_every_subcommand_help_last() {
        let Reply::Array(lines) = help(lookup(b"client").unwrap()) else { panic!() };
        let text: Vec<String> = lines
            .iter()
            .map(|l| if let Reply::Simple(s) = l { s.clone() } else { panic!() })
            .collect();
        assert_eq!(text[0], "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
        assert!(text.contains(&"SETNAME <connection-name>".to_owned()));
        assert_eq!(text[text.len() - 2], "HELP");
    }
}
