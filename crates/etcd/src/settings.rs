//! How to reach the etcd datastore: from the command line's flags and the
//! environment variables calicoctl reads (`DATASTORE_TYPE`,
//! `ETCD_ENDPOINTS`, `ETCD_USERNAME`, `ETCD_PASSWORD`, `ETCD_KEY_FILE`,
//! `ETCD_CERT_FILE`, `ETCD_CA_CERT_FILE`), the flags winning.

use std::path::PathBuf;

/// The flags, as given (each overrides its environment variable).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--datastore`: `file` or `etcdv3`.
    pub datastore: Option<String>,
    /// Whether `--config FILE` was given (it means the file, unless
    /// `--datastore etcdv3` says otherwise, which is an error).
    pub config_given: bool,
    pub endpoints: Option<String>,
    pub ca_cert_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Where the resources come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// `--config FILE`.
    File,
    Etcd(Settings),
}

/// What the client needs to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `http://host:port` or `https://host:port`, tried in turn.
    pub endpoints: Vec<String>,
    pub ca_cert_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Settings {
    /// Plain-text settings for `endpoints` (tests, the lab).
    pub fn plain(endpoints: &[&str]) -> Settings {
        Settings {
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            ca_cert_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
        }
    }

    /// The endpoints, for log lines.
    pub fn describe(&self) -> String {
        format!("etcdv3 {}", self.endpoints.join(","))
    }
}

/// Settings that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "datastore {0:?} is not supported (podwire reads \"file\", with --config, or \"etcdv3\"; Calico's Kubernetes datastore comes later)"
    )]
    Unsupported(String),
    #[error(
        "--config FILE and the etcdv3 datastore were both asked for; give one (unset DATASTORE_TYPE to read the file)"
    )]
    Both,
    #[error("no configuration: give --config FILE, or --datastore etcdv3 with --etcd-endpoints")]
    Neither,
    #[error("the etcdv3 datastore needs --etcd-endpoints (or ETCD_ENDPOINTS)")]
    NoEndpoints,
    #[error("etcd endpoint {0:?}: expected http://HOST:PORT or https://HOST:PORT")]
    BadEndpoint(String),
    #[error("{0} and {1} go together: give both or neither")]
    Pair(&'static str, &'static str),
    #[error("https endpoints need the CA certificate that signed etcd's (--etcd-ca-cert-file)")]
    NoCa,
    #[error("a client certificate needs https endpoints: {0:?} is http")]
    CertOverHttp(String),
}

/// The datastore the flags and the environment (`env`, as `std::env::var`)
/// ask for.
pub fn resolve(
    flags: &Flags,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Datastore, SettingsError> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let kind = match (&flags.datastore, flags.config_given) {
        (Some(k), _) => Some(k.clone()),
        // An explicit file wins over the environment.
        (None, true) => Some("file".to_string()),
        (None, false) => env("DATASTORE_TYPE"),
    };
    match kind.as_deref() {
        None if flags.config_given => return Ok(Datastore::File),
        None => return Err(SettingsError::Neither),
        Some("file") if flags.config_given => return Ok(Datastore::File),
        Some("file") => return Err(SettingsError::Neither),
        Some("etcdv3") if flags.config_given => return Err(SettingsError::Both),
        Some("etcdv3") => {}
        Some(other) => return Err(SettingsError::Unsupported(other.to_string())),
    }
    let endpoints = flags
        .endpoints
        .clone()
        .or_else(|| env("ETCD_ENDPOINTS"))
        .ok_or(SettingsError::NoEndpoints)?;
    let endpoints: Vec<String> = endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    if endpoints.is_empty() {
        return Err(SettingsError::NoEndpoints);
    }
    for e in &endpoints {
        let rest = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"))
            .ok_or_else(|| SettingsError::BadEndpoint(e.clone()))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains('/') {
            return Err(SettingsError::BadEndpoint(e.clone()));
        }
    }
    let path =
        |flag: &Option<PathBuf>, var: &str| flag.clone().or_else(|| env(var).map(PathBuf::from));
    let s = Settings {
        endpoints,
        ca_cert_file: path(&flags.ca_cert_file, "ETCD_CA_CERT_FILE"),
        cert_file: path(&flags.cert_file, "ETCD_CERT_FILE"),
        key_file: path(&flags.key_file, "ETCD_KEY_FILE"),
        username: flags.username.clone().or_else(|| env("ETCD_USERNAME")),
        password: flags.password.clone().or_else(|| env("ETCD_PASSWORD")),
    };
    if s.cert_file.is_some() != s.key_file.is_some() {
        return Err(SettingsError::Pair("--etcd-cert-file", "--etcd-key-file"));
    }
    if s.username.is_some() != s.password.is_some() {
        return Err(SettingsError::Pair("--etcd-username", "--etcd-password"));
    }
    let https = s
        .endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    if https > 0 && s.ca_cert_file.is_none() {
        return Err(SettingsError::NoCa);
    }
    if s.cert_file.is_some() || s.ca_cert_file.is_some() {
        if let Some(e) = s.endpoints.iter().find(|e| e.starts_with("http://")) {
            return Err(SettingsError::CertOverHttp(e.clone()));
        }
    }
    Ok(Datastore::Etcd(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_file_stays_the_default_and_flags_win_over_the_environment() {
        let file = Flags {
            config_given: true,
            ..Flags::default()
        };
        assert_eq!(resolve(&file, env(&[])), Ok(Datastore::File));
        // DATASTORE_TYPE in the environment does not override --config.
        assert_eq!(
            resolve(&file, env(&[("DATASTORE_TYPE", "etcdv3")])),
            Ok(Datastore::File)
        );
        assert_eq!(
            resolve(&Flags::default(), env(&[])),
            Err(SettingsError::Neither)
        );
        let from_env = resolve(
            &Flags::default(),
            env(&[
                ("DATASTORE_TYPE", "etcdv3"),
                (
                    "ETCD_ENDPOINTS",
                    "http://10.0.0.1:2379, http://10.0.0.2:2379",
                ),
                ("ETCD_USERNAME", "calico"),
                ("ETCD_PASSWORD", "secret"),
            ]),
        )
        .unwrap();
        let Datastore::Etcd(s) = from_env else {
            panic!()
        };
        assert_eq!(
            s.endpoints,
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(s.username.as_deref(), Some("calico"));
        // The flag's endpoints replace the environment's.
        let flags = Flags {
            datastore: Some("etcdv3".into()),
            endpoints: Some("http://10.9.9.9:2379".into()),
            ..Flags::default()
        };
        let Datastore::Etcd(s) =
            resolve(&flags, env(&[("ETCD_ENDPOINTS", "http://10.0.0.1:2379")])).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.endpoints, ["http://10.9.9.9:2379"]);
    }

    #[test]
    fn settings_that_cannot_work_are_refused_with_what_to_do() {
        let etcd = |endpoints: &str| Flags {
            datastore: Some("etcdv3".into()),
            endpoints: Some(endpoints.into()),
            ..Flags::default()
        };
        type Case<'a> = (Flags, Vec<(&'a str, &'a str)>, SettingsError);
        let cases: Vec<Case> = vec![
            (
                Flags {
                    datastore: Some("kubernetes".into()),
                    ..Flags::default()
                },
                vec![],
                SettingsError::Unsupported("kubernetes".into()),
            ),
            (
                Flags {
                    datastore: Some("etcdv3".into()),
                    config_given: true,
                    ..etcd("http://a:1")
                },
                vec![],
                SettingsError::Both,
            ),
            (
                Flags {
                    datastore: Some("etcdv3".into()),
                    ..Flags::default()
                },
                vec![],
                SettingsError::NoEndpoints,
            ),
            (etcd(" , "), vec![], SettingsError::NoEndpoints),
            (
                etcd("10.0.0.1:2379"),
                vec![],
                SettingsError::BadEndpoint("10.0.0.1:2379".into()),
            ),
            (
                etcd("http://a:1/v3"),
                vec![],
                SettingsError::BadEndpoint("http://a:1/v3".into()),
            ),
            (etcd("https://a:1"), vec![], SettingsError::NoCa),
            (
                etcd("https://a:1"),
                vec![
                    ("ETCD_CA_CERT_FILE", "/ca.pem"),
                    ("ETCD_CERT_FILE", "/c.pem"),
                ],
                SettingsError::Pair("--etcd-cert-file", "--etcd-key-file"),
            ),
            (
                etcd("http://a:1"),
                vec![("ETCD_USERNAME", "u")],
                SettingsError::Pair("--etcd-username", "--etcd-password"),
            ),
            (
                etcd("https://a:1,http://b:1"),
                vec![("ETCD_CA_CERT_FILE", "/ca.pem")],
                SettingsError::CertOverHttp("http://b:1".into()),
            ),
        ];
        for (flags, vars, want) in cases {
            assert_eq!(resolve(&flags, env(&vars)), Err(want.clone()), "{flags:?}");
            // Every refusal says what to give.
            assert!(!want.to_string().is_empty());
        }
        let ok = resolve(
            &etcd("https://a:1"),
            env(&[
                ("ETCD_CA_CERT_FILE", "/ca.pem"),
                ("ETCD_CERT_FILE", "/c.pem"),
                ("ETCD_KEY_FILE", "/k.pem"),
            ]),
        );
        assert!(
            matches!(ok, Ok(Datastore::Etcd(s)) if s.key_file.as_deref() == Some(std::path::Path::new("/k.pem")))
        );
    }
}
