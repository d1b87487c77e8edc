//! Running a kelos Task's Job to its end where no Job controller, scheduler or kubelet runs.
//!
//! kelos creates the Job for a Task; from there, what a cluster would do is done here, and
//! nothing else: create the Job's Pod from its template on the log Node (Job controller and
//! scheduler), serve the agent container's log (kubelet, see [`super::node`]), and write the
//! Job's status the way the Job controller does (`active: 1`, then `succeeded: 1` with
//! `SuccessCriteriaMet` + `Complete`, or `failed: 1` with `FailureTarget` + `Failed`). kelos
//! itself then moves the Task to Running and Succeeded/Failed, reads outputs and usage from the
//! log, and sets the timestamps: no Task status is ever written here.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kelos_hooks_shared::api::{Phase, Task};
use kube::api::{Api, LogParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{Kelos, Tasks};

/// kelos's agent container (`AgentContainerName`), whose log holds the outputs.
pub const AGENT_CONTAINER: &str = "kelos-agent";

/// How the agent run ends and what it prints between kelos's output markers (`key: value` lines
/// become `status.results`; `cost-usd`, `input-tokens`, `output-tokens` become `status.usage`).
#[derive(Clone, Debug)]
pub struct AgentRun {
    /// The terminal phase the Job ends in.
    pub phase: Phase,
    /// Output lines, e.g. `https://github.com/o/r/pull/1`, `cost-usd: 0.42`.
    pub outputs: Vec<String>,
}

impl AgentRun {
    /// A run ending in `phase` that printed `outputs`.
    pub fn new(phase: Phase, outputs: &[&str]) -> AgentRun {
        AgentRun {
            phase,
            outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// The agent container's log, in the format kelos parses.
    pub fn log(&self) -> String {
        format!(
            "agent started\n---KELOS_OUTPUTS_START---\n{}\n---KELOS_OUTPUTS_END---\n",
            self.outputs.join("\n")
        )
    }
}

/// A Task whose Job runs ([`Kelos::start_task`]), waiting for [`Kelos::finish_task`].
#[derive(Clone, Debug)]
pub struct StartedTask {
    /// Namespace and name of the Task.
    pub ns: String,
    /// The Task's name.
    pub name: String,
    /// Its Job.
    pub job: String,
    /// Its Pod.
    pub pod: String,
    /// The Pod's agent container, whose log kelos reads.
    pub container: String,
}

/// The agent container of `job`'s Pods: [`AGENT_CONTAINER`], or in kelos versions before that
/// name (kelos PR #1240) the template's first container.
fn agent_container(job: &Job) -> String {
    let containers = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers
        .iter()
        .find(|c| c.name == AGENT_CONTAINER)
        .or_else(|| containers.first())
        .map_or_else(|| AGENT_CONTAINER.to_owned(), |c| c.name.clone())
}

/// How a Task reached its terminal phase (printed by the tests).
#[derive(Clone, Debug)]
pub struct Completion {
    /// The Task as kelos left it.
    pub task: Task,
    /// The Job kelos created.
    pub job: String,
    /// The Pod created for it.
    pub pod: String,
    /// When the Job's terminal status was written.
    pub job_finished_at: Instant,
    /// From the Job's terminal status to kelos's terminal Task status being seen.
    pub kelos_took: Duration,
}

impl fmt::Display for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.task.status.clone().unwrap_or_default();
        let usage = status
            .usage
            .as_ref()
            .map(|u| serde_json::to_string(u).unwrap_or_default())
            .unwrap_or_else(|| "none".into());
        write!(
            f,
            "Task {}/{}: kelos created Job {} (Pending); Pod {} created from its template and \
             bound (as the Job controller and scheduler would); Job status active=1 → kelos set \
             Running; ready=1 → kelos recorded the Pod; Job status {} → kelos set {} ({:?}) in \
             {} ms; usage {usage}",
            self.task.metadata.namespace.as_deref().unwrap_or_default(),
            self.task.metadata.name.as_deref().unwrap_or_default(),
            self.job,
            self.pod,
            match self.task.terminal_phase() {
                Some(Phase::Failed) => "failed=1 + FailureTarget/Failed",
                _ => "succeeded=1 + SuccessCriteriaMet/Complete",
            },
            status.phase.as_deref().unwrap_or("?"),
            status.message.as_deref().unwrap_or_default(),
            self.kelos_took.as_millis(),
        )
    }
}

const WAIT: Duration = Duration::from_secs(60);

fn now() -> String {
    Timestamp::now().to_string()
}

fn condition(type_: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": "True", "reason": reason, "message": message,
           "lastProbeTime": now(), "lastTransitionTime": now()})
}

impl Kelos {
    /// Runs Task `ns/name`'s Job to the end `run` describes and waits until kelos has put the
    /// Task into that terminal phase (see the module docs for who does what).
    pub async fn run_task(&self, ns: &str, name: &str, run: &AgentRun) -> Result<Completion> {
        let started = self.start_task(ns, name, run).await?;
        self.finish_task(&started, run).await
    }

    /// The first half of [`Kelos::run_task`]: Task `ns/name`'s Job runs (its Pod exists, serves
    /// `run`'s log, and kelos has the Task Running with that Pod). [`Kelos::finish_task`] ends
    /// it: several Tasks started first end together (a burst).
    pub async fn start_task(&self, ns: &str, name: &str, run: &AgentRun) -> Result<StartedTask> {
        let client = self.cluster().client().await?;
        let tasks = self.tasks(ns).await?;
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(client, ns);

        let task = self
            .wait_task(
                &tasks,
                name,
                "kelos to create the Job (status.jobName)",
                |t| {
                    t.status
                        .as_ref()
                        .and_then(|s| s.rest.get("jobName"))
                        .and_then(Value::as_str)
                        .is_some_and(|j| !j.is_empty())
                },
            )
            .await?;
        let job_name = task
            .status
            .as_ref()
            .and_then(|s| s.rest.get("jobName"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let job = jobs.get(&job_name).await?;
        let pod = pods
            .create(&PostParams::default(), &self.pod_for(&job)?)
            .await
            .with_context(|| format!("creating the Pod of Job {job_name}"))?;
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let container = agent_container(&job);
        self.node().set_log(ns, &pod_name, &container, run.log());

        let active = json!({"status": {"startTime": now(), "active": 1, "ready": 0}});
        jobs.patch_status(&job_name, &PatchParams::default(), &Patch::Merge(&active))
            .await
            .with_context(|| format!("Job {job_name}: writing active=1"))?;
        self.wait_task(&tasks, name, "kelos to set Running", |t| {
            t.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .await?;
        self.wait_pod_seen(&tasks, &jobs, name, &job_name, &pod_name)
            .await?;
        Ok(StartedTask {
            ns: ns.to_owned(),
            name: name.to_owned(),
            job: job_name,
            pod: pod_name,
            container,
        })
    }

    /// Writes the terminal Job status `run` describes for a Task [`Kelos::start_task`] started
    /// and waits until kelos has put the Task into that phase.
    pub async fn finish_task(&self, started: &StartedTask, run: &AgentRun) -> Result<Completion> {
        let StartedTask {
            ns,
            name,
            job: job_name,
            pod: pod_name,
            container,
        } = started;
        let (ns, name) = (ns.as_str(), name.as_str());
        let client = self.cluster().client().await?;
        let tasks = self.tasks(ns).await?;
        let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
        let pods: Api<Pod> = Api::namespaced(client, ns);

        let terminal = match run.phase {
            Phase::Succeeded => json!({"status": {
                "active": 0, "ready": 0, "succeeded": 1, "completionTime": now(),
                "conditions": [
                    condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                    condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
                ],
            }}),
            Phase::Failed => json!({"status": {
                "active": 0, "ready": 0, "failed": 1,
                "conditions": [
                    condition("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                    condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                ],
            }}),
        };
        jobs.patch_status(job_name, &PatchParams::default(), &Patch::Merge(&terminal))
            .await
            .with_context(|| format!("Job {job_name}: writing its terminal status"))?;
        let job_finished_at = Instant::now();
        let task = self
            .wait_task(&tasks, name, "kelos to set the terminal phase", |t| {
                t.terminal_phase() == Some(run.phase)
            })
            .await?;
        let kelos_took = job_finished_at.elapsed();
        let results = task.status.as_ref().and_then(|s| s.results.as_ref());
        if !run.outputs.is_empty() && results.is_none() {
            let direct = pods
                .logs(
                    pod_name,
                    &LogParams {
                        container: Some(container.clone()),
                        ..Default::default()
                    },
                )
                .await;
            bail!(
                "Task {name}: kelos set {:?} without reading the agent's outputs; the Pod's log \
                 through the API server: {direct:?}\n--- kelos-controller log (tail):\n{}",
                run.phase,
                self.controller_log_tail(20)
            );
        }
        Ok(Completion {
            task,
            job: job_name.clone(),
            pod: pod_name.clone(),
            job_finished_at,
            kelos_took,
        })
    }

    /// Waits until kelos has recorded the Pod (`status.podName`): it reads outputs from the log of
    /// that Pod when the Job finishes. kelos looks Pods up in its cache on Job events, which may
    /// reach it before the Pod does, so the Job's readiness is written as the Job controller does
    /// when the Pod's readiness changes (`ready: 1`, flapping if needed) until kelos has it.
    async fn wait_pod_seen(
        &self,
        tasks: &Tasks,
        jobs: &Api<Job>,
        name: &str,
        job_name: &str,
        pod_name: &str,
    ) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        let mut ready = 0;
        loop {
            ready = 1 - ready;
            let status = json!({"status": {"ready": ready}});
            jobs.patch_status(job_name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .with_context(|| format!("Job {job_name}: writing ready={ready}"))?;
            let flap = Instant::now() + Duration::from_secs(2);
            while Instant::now() < flap {
                let task = tasks.get(name).await?;
                let seen = task.status.as_ref().and_then(|s| s.rest.get("podName"));
                if seen.and_then(Value::as_str) == Some(pod_name) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if Instant::now() > deadline {
                bail!(
                    "Task {name}: kelos did not record Pod {pod_name} within {WAIT:?}\n--- kelos-controller log (tail):\n{}",
                    self.controller_log_tail(20)
                );
            }
        }
    }

    /// The Pod the Job controller would create for `job`, already bound to the log Node.
    fn pod_for(&self, job: &Job) -> Result<Pod> {
        let template = job
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .context("Job without spec")?;
        let mut spec = template.spec.context("Job template without spec")?;
        spec.node_name = Some(self.node().name().to_owned());
        let job_name = job.metadata.name.clone().unwrap_or_default();
        let mut pod: Pod = serde_json::from_value(json!({"metadata": {
            "generateName": format!("{job_name}-"),
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                "uid": job.metadata.uid, "controller": true, "blockOwnerDeletion": true,
            }],
        }}))?;
        let meta = template.metadata.unwrap_or_default();
        pod.metadata.labels = meta.labels;
        pod.metadata.annotations = meta.annotations;
        pod.spec = Some(spec);
        Ok(pod)
    }

    /// Polls Task `name` until `done` holds (what for: `what`), failing with kelos's log.
    async fn wait_task(
        &self,
        tasks: &Tasks,
        name: &str,
        what: &str,
        done: impl Fn(&Task) -> bool,
    ) -> Result<Task> {
        let deadline = Instant::now() + WAIT;
        loop {
            let task = tasks.get(name).await?;
            if done(&task) {
                return Ok(task);
            }
            if Instant::now() > deadline {
                bail!(
                    "Task {name}: waited {WAIT:?} for {what}; status {}\n--- kelos-controller log (tail):\n{}",
                    serde_json::to_string(&task.status).unwrap_or_default(),
                    self.controller_log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
