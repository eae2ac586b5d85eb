//! `[metrics]`: where the Prometheus metrics are served. Off unless `listen` is set; a bare port
//! (`listen = "9898"`) means loopback, so metrics are not exposed beyond the host by accident.

use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// `[metrics]` section as written in the config file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `GET /metrics` is served: `IP:PORT`, or a bare `PORT` for `127.0.0.1:PORT`.
    pub listen: Option<String>,
}

impl MetricsSection {
    /// The fields the environment can set (`SIGNERD_METRICS_*`).
    pub const ENV: super::EnvSection = super::EnvSection {
        name: "metrics",
        fields: &[("listen", super::FieldKind::Text)],
    };

    /// The metrics address (`None`: no metrics listener), or what is wrong with it.
    pub fn resolve(&self) -> Result<Option<SocketAddr>, String> {
        let Some(text) = self.listen.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if let Ok(port) = text.parse::<u16>() {
            return Ok(Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
        }
        text.parse::<SocketAddr>().map(Some).map_err(|_| {
            format!(
                "metrics.listen = {text:?} is not an address; use IP:PORT (e.g. 127.0.0.1:9898) or a bare PORT for loopback"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(text: Option<&str>) -> Result<Option<SocketAddr>, String> {
        MetricsSection {
            listen: text.map(str::to_owned),
        }
        .resolve()
    }

    #[test]
    fn off_unless_set_and_a_bare_port_is_loopback() {
        assert_eq!(listen(None), Ok(None));
        assert_eq!(
            listen(Some("9898")),
            Ok(Some("127.0.0.1:9898".parse().unwrap()))
        );
        assert_eq!(
            listen(Some("0.0.0.0:9898")),
            Ok(Some("0.0.0.0:9898".parse().unwrap()))
        );
        assert_eq!(
            listen(Some("localhost:9898")).unwrap_err(),
            "metrics.listen = \"localhost:9898\" is not an address; use IP:PORT (e.g. 127.0.0.1:9898) or a bare PORT for loopback"
        );
    }
}
