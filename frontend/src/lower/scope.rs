//! The variables an instruction sees: the image's ENV and the stage's ARGs.

use indexmap::IndexMap;

use crate::graph::Platform;
use crate::shell::VarSource;

/// ENV and ARG values visible at one point of a stage. ENV wins over an ARG of
/// the same name, as in Docker. Setting and reading a variable takes the same
/// time however many a stage has (a generated Dockerfile may set 100,000).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    env: IndexMap<String, String>,
    /// Declared ARGs in order; `None` for an ARG declared without a value.
    args: IndexMap<String, Option<String>>,
}

impl Scope {
    pub fn with_env(env: &IndexMap<String, String>) -> Scope {
        Scope { env: env.clone(), args: IndexMap::new() }
    }

    /// Declares (or redeclares, in its first place) the ARG `name`.
    pub fn declare(&mut self, name: &str, value: Option<String>) {
        self.args.insert(name.to_string(), value);
    }

    /// Sets `key`; a key set before keeps its place in the order.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.insert(key.to_string(), value.to_string());
    }

    /// The value of a declared ARG.
    pub fn arg(&self, name: &str) -> Option<String> {
        self.args.get(name).and_then(|v| v.clone())
    }

    /// Whether `name` is set by ENV or declared by ARG (with a value or not).
    pub fn is_declared(&self, name: &str) -> bool {
        self.env.contains_key(name) || self.args.contains_key(name)
    }

    /// Every ENV and ARG name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.env.keys().chain(self.args.keys()).map(String::as_str)
    }

    /// ARGs with values that no ENV hides: what a RUN sees besides the image ENV.
    pub fn args_with_values(&self) -> Vec<(String, String)> {
        self.args
            .iter()
            .filter(|(n, _)| !self.env.contains_key(*n))
            .filter_map(|(n, v)| v.clone().map(|v| (n.clone(), v)))
            .collect()
    }

    /// The environment of a RUN: the image ENV, then the visible ARGs.
    pub fn run_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.extend(self.args_with_values());
        env
    }
}

impl VarSource for Scope {
    fn get_var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned().or_else(|| self.arg(name))
    }
}

/// The automatic platform ARGs (TARGETPLATFORM, BUILDARCH, …).
pub fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut args = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        args.push((format!("{prefix}PLATFORM"), p.to_string()));
        args.push((format!("{prefix}OS"), p.os.clone()));
        args.push((format!("{prefix}ARCH"), p.architecture.clone()));
        args.push((format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default()));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_hides_arg_of_same_name() {
        let mut scope = Scope::with_env(&IndexMap::from([("A".to_string(), "env".to_string())]));
        scope.declare("A", Some("arg".into()));
        scope.declare("B", Some("b".into()));
        scope.declare("C", None);
        assert_eq!(scope.get_var("A").as_deref(), Some("env"));
        assert_eq!(scope.get_var("B").as_deref(), Some("b"));
        assert_eq!(scope.get_var("C"), None);
        assert_eq!(scope.args_with_values(), vec![("B".to_string(), "b".to_string())]);
        assert_eq!(scope.run_env().len(), 2);
    }
}
