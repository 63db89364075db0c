//! A recording [`RuntimeService`] for the pod manager's unit tests: no
//! monitor, no root. It records each call (containers by name: their IDs are
//! `p-<name>`), makes sandboxes that report the IPs it is given, and answers
//! what a test does not use with an error that says so.

use podrun_runtime::api::{
    ContainerStatus, ExecSyncResult, PodSandbox, PodSandboxFilter, PodSandboxStatus,
    RuntimeService, SandboxState, ServiceError, Started,
};
use podrun_runtime::{ContainerConfig, PodSandboxConfig};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// A runtime that records each call and answers as told.
#[derive(Default)]
pub(crate) struct FakeRuntime {
    /// What was asked, in order (`run sandbox <uid>`, `start app` …).
    pub calls: Mutex<Vec<String>>,
    /// Containers whose start fails, with the runtime's message.
    pub fail_start: HashMap<String, String>,
    /// The addresses each sandbox's status reports, primary first.
    pub ips: Vec<IpAddr>,
    /// The sandboxes made, by ID (the config's UID, as the real runtime names them).
    pub sandboxes: Mutex<BTreeMap<String, PodSandboxConfig>>,
}

fn name_of(id: &str) -> &str {
    id.strip_prefix("p-").unwrap_or(id)
}

/// What a test never asks.
fn unused(call: &'static str) -> ServiceError {
    ServiceError::Failed {
        call,
        what: "fake runtime".into(),
        cause: "not used by this test".into(),
    }
}

impl FakeRuntime {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

impl RuntimeService for FakeRuntime {
    fn run_pod_sandbox(&self, config: &PodSandboxConfig, _: &str) -> Result<String, ServiceError> {
        let id = config.metadata.uid.clone();
        self.record(format!("run sandbox {id}"));
        self.sandboxes
            .lock()
            .unwrap()
            .insert(id.clone(), config.clone());
        Ok(id)
    }
    fn stop_pod_sandbox(&self, id: &str, _: Option<Duration>) -> Result<(), ServiceError> {
        assert_eq!(id, "sb", "the pod's own sandbox");
        self.record("stop sandbox".into());
        Ok(())
    }
    fn remove_pod_sandbox(&self, _: &str) -> Result<(), ServiceError> {
        Err(unused("RemovePodSandbox"))
    }
    fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, ServiceError> {
        self.record(format!("sandbox status {id}"));
        let config =
            self.sandboxes
                .lock()
                .unwrap()
                .get(id)
                .cloned()
                .ok_or(ServiceError::Failed {
                    call: "PodSandboxStatus",
                    what: format!("sandbox {id}"),
                    cause: "not found".into(),
                })?;
        Ok(PodSandboxStatus {
            sandbox: PodSandbox {
                id: id.into(),
                metadata: config.metadata.clone(),
                state: SandboxState::Ready,
                created_at: String::new(),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
                runtime_handler: String::new(),
            },
            config,
            monitor_pid: None,
            namespaces: BTreeMap::new(),
            ips: self.ips.clone(),
        })
    }
    fn list_pod_sandbox(&self, _: &PodSandboxFilter) -> Result<Vec<PodSandbox>, ServiceError> {
        Err(unused("ListPodSandbox"))
    }
    fn create_container(&self, sandbox: &str, c: &ContainerConfig) -> Result<String, ServiceError> {
        assert_eq!(sandbox, "sb", "in the pod's own sandbox");
        Ok(format!("p-{}", c.metadata.name))
    }
    fn start_container(&self, id: &str) -> Result<Started, ServiceError> {
        let name = name_of(id);
        self.record(format!("start {name}"));
        Ok(match self.fail_start.get(name) {
            Some(m) => Started::Failed { message: m.clone() },
            None => Started::Running {
                started_at: chrono::DateTime::from_timestamp(1_700_000_100, 0)
                    .unwrap()
                    .to_rfc3339(),
            },
        })
    }
    fn stop_container(&self, id: &str, grace: Option<Duration>) -> Result<(), ServiceError> {
        let grace = grace.map_or("own".to_string(), |g| format!("{}s", g.as_secs()));
        self.record(format!("stop {} grace={grace}", name_of(id)));
        Ok(())
    }
    fn remove_container(&self, id: &str) -> Result<(), ServiceError> {
        self.record(format!("remove {}", name_of(id)));
        Ok(())
    }
    fn container_status(&self, _: &str) -> Result<ContainerStatus, ServiceError> {
        Err(unused("ContainerStatus"))
    }
    fn list_containers(
        &self,
        _: &podrun_runtime::api::ContainerFilter,
    ) -> Result<Vec<ContainerStatus>, ServiceError> {
        Err(unused("ListContainers"))
    }
    fn exec(&self, _: &str, _: &[String], _: bool) -> Result<std::process::Command, ServiceError> {
        Err(unused("Exec"))
    }
    fn exec_sync(
        &self,
        _: &str,
        _: &[String],
        _: Duration,
    ) -> Result<ExecSyncResult, ServiceError> {
        Err(unused("ExecSync"))
    }
    fn update_container_resources(
        &self,
        _: &str,
        _: &podrun_runtime::LinuxContainerResources,
    ) -> Result<(), ServiceError> {
        Err(unused("UpdateContainerResources"))
    }
    fn reopen_container_log(&self, _: &str) -> Result<(), ServiceError> {
        Err(unused("ReopenContainerLog"))
    }
    fn attach(&self, _: &str) -> Result<podrun_runtime::api::Attached, ServiceError> {
        Err(unused("Attach"))
    }
    fn container_stats(
        &self,
        _: &str,
    ) -> Result<podrun_runtime::api::ContainerStats, ServiceError> {
        Err(unused("ContainerStats"))
    }
    fn pod_sandbox_stats(
        &self,
        _: &str,
    ) -> Result<podrun_runtime::api::SandboxStats, ServiceError> {
        Err(unused("PodSandboxStats"))
    }
}
