//! A minimal CRI v1 client — kubelet's side of the runtime API — for the
//! containerd test: run, inspect, stop and remove pod sandboxes over
//! containerd's Unix socket, blocking (one current-thread runtime).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest, VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

pub struct Cri {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

/// A sandbox as `PodSandboxStatus` (verbose) describes it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    /// The pod's address, as the CNI result gave it to the runtime.
    pub ip: String,
    /// The network namespace the runtime made (`/var/run/netns/cni-…`).
    pub netns: PathBuf,
    pub ready: bool,
}

impl Cri {
    /// Connects to the runtime at `socket`; `Version` must answer.
    pub fn connect(socket: &Path) -> Result<Cri, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let path = socket.to_path_buf();
        let client = rt.block_on(async move {
            let channel = Endpoint::try_from("http://[::]:50051")
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(60))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .map_err(|e| format!("{}: {e}", socket.display()))?;
            let mut client = RuntimeServiceClient::new(channel);
            client
                .version(VersionRequest {
                    version: "v1".into(),
                })
                .await
                .map_err(|e| format!("Version: {e}"))?;
            Ok::<_, String>(client)
        })?;
        Ok(Cri { rt, client })
    }

    /// `RunPodSandbox` for pod `namespace/name` (what kubelet sends, less
    /// DNS and ports); returns the sandbox's id.
    pub fn run_pod(&mut self, namespace: &str, name: &str, uid: &str) -> Result<String, String> {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: String::new(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let c = &mut self.client;
        self.rt
            .block_on(c.run_pod_sandbox(req))
            .map(|r| r.into_inner().pod_sandbox_id)
            .map_err(|e| format!("RunPodSandbox {namespace}/{name}: {}", e.message()))
    }

    /// `PodSandboxStatus` (verbose): the pod's address and namespace.
    pub fn status(&mut self, id: &str) -> Result<Sandbox, String> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        };
        let c = &mut self.client;
        let r = self
            .rt
            .block_on(c.pod_sandbox_status(req))
            .map_err(|e| format!("PodSandboxStatus {id}: {}", e.message()))?
            .into_inner();
        let status = r.status.ok_or("PodSandboxStatus: no status")?;
        let ip = status.network.map(|n| n.ip).unwrap_or_default();
        // containerd's verbose info: the runtime spec it gave runc, whose
        // network namespace is the one the CNI plugin was given.
        let info: serde_json::Value =
            serde_json::from_str(r.info.get("info").ok_or("no verbose info")?)
                .map_err(|e| format!("verbose info: {e}"))?;
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["type"] == "network"))
            .and_then(|n| n["path"].as_str())
            .ok_or_else(|| format!("no network namespace in {info}"))?;
        Ok(Sandbox {
            id: id.into(),
            ip,
            netns: PathBuf::from(netns),
            ready: status.state == k8s_cri::v1::PodSandboxState::SandboxReady as i32,
        })
    }

    /// `StopPodSandbox`: kills the sandbox and tears its network down
    /// (the runtime's CNI DEL).
    pub fn stop_pod(&mut self, id: &str) -> Result<(), String> {
        let c = &mut self.client;
        self.rt
            .block_on(c.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            }))
            .map(drop)
            .map_err(|e| format!("StopPodSandbox {id}: {}", e.message()))
    }

    /// `RemovePodSandbox`: forgets the sandbox (and its namespace).
    pub fn remove_pod(&mut self, id: &str) -> Result<(), String> {
        let c = &mut self.client;
        self.rt
            .block_on(c.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            }))
            .map(drop)
            .map_err(|e| format!("RemovePodSandbox {id}: {}", e.message()))
    }
}
