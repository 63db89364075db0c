//! `podrun top pod|node`: kubectl top's tables, from the agent's samples of
//! the cgroups (see the agent's `top` module for how CPU and memory are read).

use crate::kubectl::{call, ensure_agent, NamespaceArgs};
use crate::Cli;
use anyhow::{bail, Result};
use podrun_agent::api::{Request, Response};

#[derive(clap::Args)]
pub struct TopArgs {
    /// What: pod (pods, po) or node (nodes, no).
    resource: String,
    /// Only this pod (or node).
    name: Option<String>,
    #[command(flatten)]
    ns: NamespaceArgs,
    /// Every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
    /// A row per container (top pod).
    #[arg(long)]
    containers: bool,
    /// Order by cpu or memory, most first (top pod).
    #[arg(long = "sort-by", default_value = "")]
    sort_by: String,
}

pub fn top(cli: &Cli, args: &TopArgs) -> Result<()> {
    let request = match args.resource.as_str() {
        "pod" | "pods" | "po" => Request::TopPods {
            namespace: (!args.all_namespaces).then(|| args.ns.namespace.clone()),
            name: args.name.clone(),
            containers: args.containers,
            sort_by: args.sort_by.clone(),
        },
        "node" | "nodes" | "no" => Request::TopNode,
        other => bail!(
            "the server doesn't have a resource type \"{other}\" (podrun top knows pods and nodes)"
        ),
    };
    ensure_agent(cli)?;
    match call(cli, &request)? {
        Response::Text { text } => {
            print!("{text}");
            Ok(())
        }
        Response::Done { warnings, .. } => {
            for w in warnings {
                eprintln!("{w}");
            }
            Ok(())
        }
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the agent: {other:?}"),
    }
}
