//! `fixture_bin` from a crate that does not build the fixture itself, as the daemon's, the
//! CLI's and xtask's tests use it.

use serde_json::json;
use shoal_testkit::client::Client;

#[test]
fn fixture_bin_finds_or_builds_the_binary() {
    let path = shoal_testkit::fixture_bin();
    assert!(path.is_file(), "{}", path.display());
    let mut client = Client::spawn_fixture(["--name", "located"]).unwrap();
    let result = client.initialize(json!({})).unwrap();
    assert_eq!(result["serverInfo"]["name"], "located");
}
