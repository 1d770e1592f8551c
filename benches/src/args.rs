//! A tiny `--key value` argument parser (keeps the harness free of dependencies).

use std::collections::HashMap;

pub(crate) struct Args {
    values: HashMap<String, String>,
}

impl Args {
    pub(crate) fn parse(args: &[String]) -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let Some(key) = k.strip_prefix("--") else {
                return Err(format!("expected --option, got `{k}`"));
            };
            let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            values.insert(key.to_owned(), v.clone());
        }
        Ok(Args { values })
    }

    pub(crate) fn get(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.values.get(key) {
            None => Ok(default),
            Some(v) => {
                v.replace('_', "").parse().map_err(|_| format!("--{key}: `{v}` is not a number"))
            }
        }
    }

    /// A text option (`--impl relaxed`), or `default`.
    pub(crate) fn text<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.values.get(key).map_or(default, String::as_str)
    }

    pub(crate) fn threads(&self) -> Result<usize, String> {
        let default = std::thread::available_parallelism().map_or(1, usize::from) as u64;
        let t = self.get("threads", default)?;
        if t == 0 {
            return Err("--threads must be at least 1".into());
        }
        Ok(t as usize)
    }
}
