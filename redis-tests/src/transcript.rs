//! Scenario transcripts compared byte for byte between Pinnacle and a real redis-server.

use crate::frame::show;
use crate::process::{Builder, Server};
use crate::tools;

/// One step of a scenario: what was sent (a label) and the raw reply bytes.
pub type Transcript = Vec<(String, Vec<u8>)>;

/// Runs `scenario` on a fresh Pinnacle and on a fresh redis-server and asserts that every step
/// got the same bytes (skipped, or failed under `REDIS_TESTS_STRICT`, without redis-server).
pub fn assert_same_as_redis(test: &str, scenario: impl Fn(&Server) -> Transcript) {
    if !tools::available(test, &["redis-server"]) {
        return;
    }
    let ours = Builder::pinnacle().start().expect("start pinnacle");
    let theirs = Server::redis().expect("start redis-server");
    let a = scenario(&ours);
    let b = scenario(&theirs);
    for ((what, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(show(x), show(y), "{what}: pinnacle vs redis");
    }
    assert_eq!(a.len(), b.len(), "transcript lengths");
}
