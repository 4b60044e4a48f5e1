//! The real `shoal-fixture` binary, driven through the test client.

mod util;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_testkit::client::{Client, Error, IdStyle};
use shoal_testkit::process;
use util::{PROMPT, QUIET, fixture, fixture_command, is_progress_for, plain, scratch_dir, text};

#[test]
fn initialize_negotiates_the_version_and_records_the_client() {
    let mut client = Client::spawn(fixture_command(&["--name", "fx"])).unwrap();
    let result = client
        .initialize_with(json!({
            "protocolVersion": "2025-03-26",
            "capabilities": {"sampling": {}},
            "clientInfo": {"name": "tester", "version": "9"},
        }))
        .unwrap();
    assert_eq!(result["protocolVersion"], "2025-03-26");
    assert_eq!(result["serverInfo"]["name"], "fx");
    assert!(
        result["capabilities"]["tools"]["listChanged"]
            .as_bool()
            .unwrap()
    );
    assert!(
        result["capabilities"]["resources"]["subscribe"]
            .as_bool()
            .unwrap()
    );
    assert!(
        result["capabilities"].get("tasks").is_none(),
        "no tasks before 2025-11-25"
    );

    // A second initialize is accepted (like the reference server), counted, and renegotiates.
    let again = client
        .result(
            "initialize",
            json!({"protocolVersion": "2099-01-01", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}),
        )
        .unwrap();
    assert_eq!(again["protocolVersion"], "2025-11-25");
    assert!(again["capabilities"]["tasks"]["requests"]["tools"]["call"].is_object());

    let stats = client.stats().unwrap();
    assert_eq!(stats["initializeCount"], 2);
    assert_eq!(stats["initializedNotifications"], 1);
    assert_eq!(stats["clientInfo"]["name"], "x");
    assert_eq!(stats["protocolVersion"], "2025-11-25");
    assert_eq!(stats["pid"], client.pid().unwrap());

    // Legacy server: the 2026 discovery probe is "method not found", so clients fall back.
    let response = client.request("server/discover", json!({})).unwrap();
    assert_eq!(response.error().unwrap().code, -32601);
}

#[test]
fn configured_versions_and_env_vars() {
    let mut command = fixture_command(&[]);
    command
        .env("SHOAL_FIXTURE_NAME", "from-env")
        .env("SHOAL_FIXTURE_PROTOCOL_VERSIONS", "2024-11-05,2025-03-26");
    let mut client = Client::spawn(command).unwrap();
    let result = client.initialize(json!({})).unwrap();
    assert_eq!(result["serverInfo"]["name"], "from-env");
    assert_eq!(result["protocolVersion"], "2025-03-26", "latest it speaks");
    let tools = client.result("tools/list", json!({})).unwrap();
    assert!(tools["tools"][0].get("execution").is_none());

    let output = fixture_command(&["--bogus"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown flag --bogus"));
    let output = fixture_command(&["--help"]).output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("--spawn-counter PATH"));
}

#[test]
fn echo_and_errors() {
    let mut client = plain();
    let result = client.call_tool("echo", json!({"text": "hello"})).unwrap();
    assert_eq!(text(&result), "hello");
    let big = client.call_tool("big", json!({"bytes": 1 << 20})).unwrap();
    assert_eq!(text(&big).len(), 1 << 20);

    let check_error = |client: &mut Client, method: &str, params: Value, code: i64| {
        let response = client.request(method, params).unwrap();
        assert_eq!(
            response.error().map(|e| e.code),
            Some(code),
            "{method}: {:?}",
            response.raw
        );
    };
    check_error(&mut client, "no/such/method", json!({}), -32601);
    check_error(&mut client, "tools/call", json!({"name": "nope"}), -32602);
    check_error(
        &mut client,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": 1}}),
        -32602,
    );
    check_error(
        &mut client,
        "tools/call",
        json!({"name": "big", "arguments": {"bytes": 1u64 << 40}}),
        -32602,
    );
    check_error(
        &mut client,
        "tools/call",
        json!({"name": "fail", "arguments": {"code": -32099}}),
        -32099,
    );

    let result = client
        .call_tool("tool_error", json!({"message": "bad"}))
        .unwrap();
    assert_eq!(result["isError"], true);
    assert_eq!(text(&result), "bad");

    let error = client.call_tool("fail", json!({})).unwrap_err();
    assert!(matches!(error, Error::Rpc { .. }));
    assert!(error.to_string().contains("tools/call fail"), "{error}");
}

#[test]
fn ids_keep_their_json_type_and_duplicates_are_recorded() {
    let mut client = plain();
    // Both in flight at once: `1` is slow, `"1"` is answered first.
    client
        .send_request_with_id(
            json!(1),
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 100, "steps": 1}}),
        )
        .unwrap();
    client
        .send_request_with_id(
            json!("1"),
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "s"}}),
        )
        .unwrap();
    let first = client.recv(PROMPT).unwrap();
    assert_eq!(
        first["id"],
        json!("1"),
        "the string id, answered while the number one waits"
    );
    assert_eq!(text(&first["result"]), "s");
    let second = client.wait_response(&json!(1), PROMPT).unwrap();
    assert_eq!(second.raw["id"], json!(1));
    assert!(second.raw["id"].is_u64());

    // Same id twice while the first is in flight: the fixture records it.
    client.set_id_style(IdStyle::String);
    let id = client.next_id();
    let wait = json!({"name": "wait_cancel", "arguments": {"timeout_ms": 5000}});
    client
        .send_request_with_id(id.clone(), "tools/call", wait.clone())
        .unwrap();
    client
        .send_request_with_id(id.clone(), "tools/call", wait)
        .unwrap();
    let stats = client.stats().unwrap();
    assert_eq!(stats["duplicateIds"], json!([id]));
    assert_eq!(stats["inFlight"].as_array().unwrap().len(), 1);
    let ids = stats["inFlight"].as_array().unwrap();
    assert_eq!(ids[0], id);
}

#[test]
fn progress_uses_the_token_and_can_come_late() {
    let mut client = plain();
    let token = json!("tok-7");
    let id = client
        .send_request(
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 30, "steps": 3, "late": 2}, "_meta": {"progressToken": token}}),
        )
        .unwrap();
    let mut order = Vec::new();
    for _ in 0..6 {
        let message = client.recv(PROMPT).unwrap();
        if is_progress_for(&message, &token) {
            order.push(format!("progress {}", message["params"]["progress"]));
        } else {
            assert_eq!(message["id"], id, "{message}");
            order.push("response".to_owned());
        }
    }
    assert_eq!(
        order,
        [
            "progress 1",
            "progress 2",
            "progress 3",
            "response",
            "progress 4",
            "progress 5"
        ]
    );
    // Without a token: no progress at all.
    client
        .call_tool("slow", json!({"ms": 10, "steps": 2}))
        .unwrap();
    client
        .expect_none("progress without a token", QUIET, |m| {
            m["method"] == "notifications/progress"
        })
        .unwrap();
}

#[test]
fn cancellation_stops_the_request_and_is_recorded() {
    let mut client = plain();
    let waiting = client
        .send_request(
            "tools/call",
            json!({"name": "wait_cancel", "arguments": {"timeout_ms": 30000}}),
        )
        .unwrap();
    let token = json!(99);
    let slow = client
        .send_request(
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 30000, "steps": 1000}, "_meta": {"progressToken": token}}),
        )
        .unwrap();
    client
        .expect("first progress", PROMPT, |m| is_progress_for(m, &token))
        .unwrap();

    client
        .notify(
            "notifications/cancelled",
            json!({"requestId": waiting, "reason": "test"}),
        )
        .unwrap();
    client
        .notify("notifications/cancelled", json!({"requestId": slow}))
        .unwrap();
    // A cancel for an id of the other JSON type is not the same request.
    client
        .notify(
            "notifications/cancelled",
            json!({"requestId": waiting.to_string()}),
        )
        .unwrap();

    let stats = client.stats().unwrap();
    assert_eq!(
        stats["cancellations"],
        json!([
            {"requestId": waiting, "reason": "test", "inFlight": true},
            {"requestId": slow, "reason": null, "inFlight": true},
            {"requestId": waiting.to_string(), "reason": null, "inFlight": false},
        ])
    );
    assert_eq!(stats["inFlight"], json!([]));
    client
        .expect_none("a response to a cancelled request", QUIET, |m| {
            m.get("method").is_none() && (m["id"] == waiting || m["id"] == slow)
        })
        .unwrap();

    // Uncancelled, wait_cancel ends with a tool error.
    let result = client
        .call_tool("wait_cancel", json!({"timeout_ms": 10}))
        .unwrap();
    assert_eq!(result["isError"], true);
}

#[test]
fn requests_are_handled_concurrently() {
    let mut client = plain();
    let slow = client
        .send_request(
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 60000, "steps": 1}}),
        )
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        text(&client.call_tool("echo", json!({"text": "quick"})).unwrap()),
        "quick"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "echo waited for slow"
    );
    client
        .notify("notifications/cancelled", json!({"requestId": slow}))
        .unwrap();
}

#[test]
fn sampling_elicitation_and_roots_round_trip() {
    let mut client = fixture(&[], json!({"sampling": {}, "elicitation": {}, "roots": {}}));

    let id = client
        .send_request(
            "tools/call",
            json!({"name": "sample", "arguments": {"prompt": "2+2?"}}),
        )
        .unwrap();
    let request = client
        .expect_request("sampling/createMessage", PROMPT)
        .unwrap();
    assert_eq!(request["params"]["messages"][0]["content"]["text"], "2+2?");
    let answer =
        json!({"role": "assistant", "content": {"type": "text", "text": "4"}, "model": "m1"});
    client.respond(&request["id"], answer.clone()).unwrap();
    let result = client
        .wait_response(&id, PROMPT)
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(result["structuredContent"]["response"], answer);
    assert_eq!(result["isError"], false);

    // An error answer comes back as tool error content.
    let id = client
        .send_request(
            "tools/call",
            json!({"name": "elicit", "arguments": {"message": "name?"}}),
        )
        .unwrap();
    let request = client.expect_request("elicitation/create", PROMPT).unwrap();
    assert_eq!(request["params"]["message"], "name?");
    client
        .respond_error(&request["id"], -32603, "no user here")
        .unwrap();
    let result = client
        .wait_response(&id, PROMPT)
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(result["isError"], true);
    assert_eq!(
        result["structuredContent"]["error"]["message"],
        "no user here"
    );

    let id = client
        .send_request("tools/call", json!({"name": "roots"}))
        .unwrap();
    let request = client.expect_request("roots/list", PROMPT).unwrap();
    let roots = json!({"roots": [{"uri": "file:///project", "name": "project"}]});
    client.respond(&request["id"], roots.clone()).unwrap();
    let result = client
        .wait_response(&id, PROMPT)
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(result["structuredContent"]["response"], roots);

    // Server→client ids are numbers from 0, like the SDKs'.
    assert_eq!(request["id"], 2);

    let id = client
        .send_request("tools/call", json!({"name": "ping_client"}))
        .unwrap();
    let ping = client.expect_request("ping", PROMPT).unwrap();
    client.respond(&ping["id"], json!({})).unwrap();
    let result = client
        .wait_response(&id, PROMPT)
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(result["structuredContent"]["response"], json!({}));

    // Cancelling the tool call makes the fixture cancel its own sampling request.
    let id = client
        .send_request(
            "tools/call",
            json!({"name": "sample", "arguments": {"prompt": "never answered"}}),
        )
        .unwrap();
    let request = client
        .expect_request("sampling/createMessage", PROMPT)
        .unwrap();
    client
        .notify("notifications/cancelled", json!({"requestId": id}))
        .unwrap();
    let cancelled = client
        .expect_notification("notifications/cancelled", PROMPT)
        .unwrap();
    assert_eq!(cancelled["params"]["requestId"], request["id"]);

    // An answer nobody asked for is recorded.
    client.respond(&json!(12345), json!({})).unwrap();
    let stats = client.stats().unwrap();
    assert_eq!(stats["unexpectedResponses"], json!([12345]));
    assert_eq!(stats["responsesReceived"], 5);
}

#[test]
fn subscriptions_and_updates() {
    let mut client = plain();
    let uri = "fixture://static/1";
    client
        .result("resources/subscribe", json!({"uri": uri}))
        .unwrap();
    let result = client.call_tool("touch", json!({"uri": uri})).unwrap();
    assert_eq!(result["structuredContent"]["emitted"], true);
    let update = client
        .expect_notification("notifications/resources/updated", PROMPT)
        .unwrap();
    assert_eq!(update["params"]["uri"], uri);
    assert_eq!(client.stats().unwrap()["subscriptions"], json!([uri]));

    client
        .result("resources/unsubscribe", json!({"uri": uri}))
        .unwrap();
    let result = client.call_tool("touch", json!({"uri": uri})).unwrap();
    assert_eq!(result["structuredContent"]["emitted"], false);
    client
        .expect_none("an update after unsubscribe", QUIET, |m| {
            m["method"] == "notifications/resources/updated"
        })
        .unwrap();
    // `force` sends it anyway (a backend that ignores subscriptions).
    client
        .call_tool("touch", json!({"uri": uri, "force": true}))
        .unwrap();
    client
        .expect_notification("notifications/resources/updated", PROMPT)
        .unwrap();

    let stats = client.stats().unwrap();
    assert_eq!(stats["subscriptions"], json!([]));
    assert_eq!(stats["subscribeRequests"], 1);
    assert_eq!(stats["unsubscribeRequests"], 1);
    assert_eq!(stats["resourceUpdatesSent"], 2);
}

#[test]
fn log_level_filters_messages() {
    let mut client = plain();
    let log = |client: &mut Client, level: &str| {
        let result = client
            .call_tool(
                "log",
                json!({"level": level, "message": format!("at {level}"), "logger": "t"}),
            )
            .unwrap();
        result["structuredContent"]["emitted"].as_u64().unwrap()
    };
    assert_eq!(log(&mut client, "debug"), 0, "default level is info");
    assert_eq!(log(&mut client, "warning"), 1);
    let message = client
        .expect_notification("notifications/message", PROMPT)
        .unwrap();
    assert_eq!(
        message["params"],
        json!({"level": "warning", "logger": "t", "data": "at warning"})
    );

    client
        .result("logging/setLevel", json!({"level": "error"}))
        .unwrap();
    assert_eq!(log(&mut client, "warning"), 0);
    client
        .result("logging/setLevel", json!({"level": "debug"}))
        .unwrap();
    assert_eq!(log(&mut client, "debug"), 1);
    let response = client
        .request("logging/setLevel", json!({"level": "loud"}))
        .unwrap();
    assert_eq!(response.error().unwrap().code, -32602);

    let stats = client.stats().unwrap();
    assert_eq!(stats["logLevel"], "debug");
    assert_eq!(stats["setLevelRequests"], json!(["error", "debug"]));
}

#[test]
fn list_changed_and_tool_variants() {
    let mut client = fixture(&["--tools-variant", "1"], json!({}));
    let names = |client: &mut Client| -> Vec<String> {
        let tools = client.result("tools/list", json!({})).unwrap();
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tool| tool["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(names(&mut client).contains(&"variant_1".to_owned()));
    client
        .call_tool(
            "notify_list_changed",
            json!({"kind": "tools", "variant": 2}),
        )
        .unwrap();
    client
        .expect_notification("notifications/tools/list_changed", PROMPT)
        .unwrap();
    let after = names(&mut client);
    assert!(after.contains(&"variant_2".to_owned()) && !after.contains(&"variant_1".to_owned()));
    assert_eq!(
        text(&client.call_tool("variant_2", json!({})).unwrap()),
        "2"
    );
    client
        .call_tool("notify_list_changed", json!({"kind": "prompts"}))
        .unwrap();
    client
        .expect_notification("notifications/prompts/list_changed", PROMPT)
        .unwrap();
}

#[test]
fn chatty_server_talks_right_after_initialized() {
    let mut client = fixture(&["--chatty"], json!({"roots": {"listChanged": true}}));
    for kind in ["tools", "resources", "prompts"] {
        client
            .expect_notification(&format!("notifications/{kind}/list_changed"), PROMPT)
            .unwrap();
    }
    let request = client.expect_request("roots/list", PROMPT).unwrap();
    client
        .respond(&request["id"], json!({"roots": [{"uri": "file:///r"}]}))
        .unwrap();
    let stats = client.stats().unwrap();
    assert_eq!(
        stats["chattyRoots"]["result"]["roots"][0]["uri"],
        "file:///r"
    );

    // Without the roots capability: no roots/list.
    let mut client = fixture(&["--chatty"], json!({}));
    client
        .expect_notification("notifications/prompts/list_changed", PROMPT)
        .unwrap();
    client
        .expect_none("roots/list without the capability", QUIET, |m| {
            m["method"] == "roots/list"
        })
        .unwrap();
}

#[test]
fn batches_parse_errors_and_bad_envelopes() {
    let mut client = plain();
    client
        .send_raw(
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":"2","method":"tools/call","params":{"name":"slow","arguments":{"ms":20,"steps":1}}},7]"#,
        )
        .unwrap();
    let batch = client
        .expect("the batch answer", PROMPT, Value::is_array)
        .unwrap();
    let mut ids: Vec<String> = batch
        .as_array()
        .unwrap()
        .iter()
        .map(|answer| answer["id"].to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["\"2\"", "1", "null"]);

    client.send_raw("[]").unwrap();
    let answer = client.recv(PROMPT).unwrap();
    assert_eq!(answer["error"]["code"], -32600);

    client.send_raw("{not json").unwrap();
    let answer = client.recv(PROMPT).unwrap();
    assert_eq!(answer["error"]["code"], -32700);
    assert_eq!(answer["id"], Value::Null);

    client
        .send_raw(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#)
        .unwrap();
    let answer = client.recv(PROMPT).unwrap();
    assert_eq!(
        (answer["error"]["code"].clone(), answer["id"].clone()),
        (json!(-32600), Value::Null)
    );

    // Still serving, and it kept count.
    let stats = client.stats().unwrap();
    assert_eq!(stats["batches"], 2);
    assert_eq!(
        stats["invalidMessages"], 4,
        "7, [], the parse error, the null id"
    );
}

#[test]
fn crash_tool_and_crash_after_requests() {
    let mut client = plain();
    let error = client.call_tool("crash", json!({"code": 7})).unwrap_err();
    assert!(matches!(error, Error::Closed { .. }), "{error}");
    assert_eq!(client.wait_exit(PROMPT).unwrap().code(), Some(7));

    let mut client = Client::spawn(fixture_command(&["--crash-after-requests", "2"])).unwrap();
    client.initialize(json!({})).unwrap();
    client.result("ping", json!({})).unwrap();
    let error = client.request("ping", json!({})).unwrap_err();
    assert!(matches!(error, Error::Closed { .. }), "{error}");
    assert_eq!(client.wait_exit(PROMPT).unwrap().code(), Some(1));
}

#[test]
fn stdin_eof_exits_unless_ignored_and_sigterm_can_be_ignored() {
    let mut client = plain();
    client.close_input();
    assert!(client.wait_exit(PROMPT).unwrap().success());

    let mut client = fixture(&["--ignore-stdin-eof", "--ignore-sigterm"], json!({}));
    let pid = client.pid().unwrap();
    process::terminate(pid).unwrap();
    client.result("ping", json!({})).unwrap();
    client.close_input();
    let error = client.wait_exit(QUIET).unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error}");
    process::kill(pid).unwrap();
    assert!(
        client.wait_exit(PROMPT).unwrap().code().is_none(),
        "killed by a signal"
    );

    let mut client = plain();
    process::terminate(client.pid().unwrap()).unwrap();
    assert!(
        client.wait_exit(PROMPT).unwrap().code().is_none(),
        "SIGTERM kills by default"
    );
}

#[test]
fn spawn_counter_counts_every_start() {
    let dir = scratch_dir("spawn-counter");
    let counter = dir.join("spawns");
    let counter_arg = counter.to_str().unwrap();
    let mut clients: Vec<Client> = (0..2)
        .map(|_| fixture(&["--spawn-counter", counter_arg], json!({})))
        .collect();
    let mut command = fixture_command(&[]);
    command.env("SHOAL_FIXTURE_SPAWN_COUNTER", &counter);
    let mut by_env = Client::spawn(command).unwrap();
    by_env.initialize(json!({})).unwrap();
    clients.push(by_env);

    let mut recorded: Vec<u32> = std::fs::read_to_string(&counter)
        .unwrap()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    let mut expected: Vec<u32> = clients.iter().map(|client| client.pid().unwrap()).collect();
    recorded.sort_unstable();
    expected.sort_unstable();
    assert_eq!(recorded, expected);
}

#[test]
fn startup_delay_is_honoured() {
    let delay = Duration::from_millis(300);
    let started = Instant::now();
    let mut client = Client::spawn(fixture_command(&["--startup-delay-ms", "300"])).unwrap();
    client.initialize(json!({})).unwrap();
    assert!(
        started.elapsed() >= delay,
        "answered after {:?}",
        started.elapsed()
    );
}

#[test]
fn grandchild_shares_the_process_group_and_outlives_the_fixture() {
    let dir = scratch_dir("grandchild");
    let pid_file = dir.join("grandchild.pid");
    let mut client = fixture(
        &["--grandchild-pid-file", pid_file.to_str().unwrap()],
        json!({}),
    );
    let fixture_pid = client.pid().unwrap();
    let grandchild = process::read_pid_file(&pid_file, PROMPT).unwrap();
    assert_ne!(grandchild, fixture_pid);
    assert!(process::is_alive(grandchild));
    assert_eq!(
        process::process_group(grandchild).unwrap(),
        process::process_group(fixture_pid).unwrap()
    );

    // Killing only the fixture leaves the grandchild: that is what tree-kill tests must catch.
    client.kill();
    assert!(process::is_alive(grandchild));
    process::kill(grandchild).unwrap();
    assert!(process::wait_for_exit(grandchild, PROMPT));
}

#[test]
fn tasks_run_poll_and_cancel() {
    let mut client = plain();
    let tools = client.result("tools/list", json!({})).unwrap();
    let slow = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "slow")
        .unwrap();
    assert_eq!(slow["execution"]["taskSupport"], "optional");

    let created = client
        .result(
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 50, "steps": 2}, "task": {"ttl": 5000}}),
        )
        .unwrap();
    let task = &created["task"];
    assert_eq!(task["status"], "working");
    assert_eq!(task["ttl"], 5000);
    let task_id = task["taskId"].clone();
    let got = client
        .result("tasks/get", json!({"taskId": task_id}))
        .unwrap();
    assert_eq!(got["taskId"], task_id);

    let result = client
        .result("tasks/result", json!({"taskId": task_id}))
        .unwrap();
    assert!(text(&result).starts_with("slow: done"));
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        task_id
    );
    let status = client
        .expect_notification("notifications/tasks/status", PROMPT)
        .unwrap();
    assert_eq!(status["params"]["status"], "completed");
    let got = client
        .result("tasks/get", json!({"taskId": task_id}))
        .unwrap();
    assert_eq!(got["status"], "completed");

    // Cancel a waiting task.
    let created = client
        .result("tools/call", json!({"name": "wait_cancel", "task": {}}))
        .unwrap();
    let waiting = created["task"]["taskId"].clone();
    let cancelled = client
        .result("tasks/cancel", json!({"taskId": waiting}))
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    let response = client
        .request("tasks/result", json!({"taskId": waiting}))
        .unwrap();
    assert_eq!(response.error().unwrap().code, -32603);
    let response = client
        .request("tasks/cancel", json!({"taskId": waiting}))
        .unwrap();
    assert_eq!(response.error().unwrap().code, -32602, "already terminal");

    let listed = client.result("tasks/list", json!({})).unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 2);
    let response = client
        .request("tasks/get", json!({"taskId": "nope"}))
        .unwrap();
    assert_eq!(response.error().unwrap().code, -32602);
    let response = client
        .request(
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "x"}, "task": {}}),
        )
        .unwrap();
    assert_eq!(
        response.error().unwrap().code,
        -32601,
        "echo is not task-capable"
    );
}

#[test]
fn task_requests_to_the_client_carry_the_related_task() {
    let mut client = fixture(&[], json!({"sampling": {}}));
    let created = client
        .result(
            "tools/call",
            json!({"name": "sample", "arguments": {"prompt": "p"}, "task": {}}),
        )
        .unwrap();
    let task_id = created["task"]["taskId"].clone();
    let request = client
        .expect_request("sampling/createMessage", PROMPT)
        .unwrap();
    assert_eq!(
        request["params"]["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        task_id
    );
    client
        .respond(
            &request["id"],
            json!({"role": "assistant", "content": {"type": "text", "text": "a"}, "model": "m"}),
        )
        .unwrap();
    let result = client
        .result("tasks/result", json!({"taskId": task_id}))
        .unwrap();
    assert_eq!(result["structuredContent"]["response"]["model"], "m");
}

#[test]
fn resources_prompts_and_completion() {
    let mut client = fixture(&["--page-size", "2"], json!({}));
    let mut uris = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let params = if cursor.is_null() {
            json!({})
        } else {
            json!({"cursor": cursor})
        };
        let page = client.result("resources/list", params).unwrap();
        pages += 1;
        for resource in page["resources"].as_array().unwrap() {
            uris.push(resource["uri"].as_str().unwrap().to_owned());
        }
        cursor = page.get("nextCursor").cloned().unwrap_or(Value::Null);
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(uris.len(), 5);
    let response = client
        .request("resources/list", json!({"cursor": "forged"}))
        .unwrap();
    assert_eq!(response.error().unwrap().code, -32602);

    let read = client
        .result("resources/read", json!({"uri": "fixture://static/3"}))
        .unwrap();
    assert_eq!(read["contents"][0]["text"], "static resource 3");
    let read = client
        .result("resources/read", json!({"uri": "fixture://dynamic/abc"}))
        .unwrap();
    assert_eq!(read["contents"][0]["text"], "dynamic resource abc");
    let response = client
        .request("resources/read", json!({"uri": "fixture://nope"}))
        .unwrap();
    assert_eq!(response.error().unwrap().code, -32002);
    let templates = client
        .result("resources/templates/list", json!({}))
        .unwrap();
    assert_eq!(
        templates["resourceTemplates"][0]["uriTemplate"],
        "fixture://dynamic/{id}"
    );

    let prompts = client.result("prompts/list", json!({})).unwrap();
    assert_eq!(prompts["prompts"].as_array().unwrap().len(), 2);
    let prompt = client
        .result(
            "prompts/get",
            json!({"name": "greeting", "arguments": {"name": "Ann"}}),
        )
        .unwrap();
    assert_eq!(prompt["messages"][0]["content"]["text"], "Hello, Ann!");
    let completion = client
        .result(
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "greeting"}, "argument": {"name": "name", "value": "b"}}),
        )
        .unwrap();
    assert_eq!(completion["completion"]["values"], json!(["bob"]));
    client.result("ping", json!({})).unwrap();
}

#[test]
fn requests_before_initialized_are_counted() {
    let mut client = Client::spawn(fixture_command(&[])).unwrap();
    client.result("ping", json!({})).unwrap();
    client.initialize(json!({})).unwrap();
    let stats = client.stats().unwrap();
    assert_eq!(
        stats["requestsBeforeInitialized"], 1,
        "the ping; initialize itself is not counted"
    );
}

#[test]
fn fixture_bin_finds_or_builds_the_binary() {
    let path = shoal_testkit::fixture_bin();
    assert!(path.is_file(), "{}", path.display());
    let mut client = Client::spawn_fixture(["--name", "located"]).unwrap();
    let result = client.initialize(json!({})).unwrap();
    assert_eq!(result["serverInfo"]["name"], "located");
}
