//! Training jobs: a queue of runs in the database ([`queue`]), one [`TrainTask`] per task
//! that says how a run of it trains ([`task`]), and the worker that claims runs and drives
//! them through their task ([`worker`]), the shared live state progress streams follow
//! ([`feed`]), and the backbone feature cache runs read and write ([`features`]). Detection
//! ([`detect`]) is one more [`TrainTask`], on a dataset of images with boxes.

pub mod detect;
pub mod features;
pub mod feed;
pub mod queue;
pub mod task;
pub mod worker;

pub use detect::Detect;
pub use feed::{RunFeeds, Subscription};
pub use queue::{
    MAX_ATTEMPTS, RunInfo, cancel, claim, enqueue, enqueue_task, get_run, list_runs,
    maybe_auto_retrain, reap_stale,
};
pub use task::{
    Classify, Job, Outputs, Product, Rank, TASKS, TrainTask, parse, parse_params,
    parse_rank_params, parse_task_params, task_named,
};
pub use worker::{Outcome, Worker};
