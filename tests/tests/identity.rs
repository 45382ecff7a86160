//! Plan and task identity (docs/DESIGN.md §1) through the real binary.

use planrt_e2e::{Scratch, TASK_ID_VECTORS, reference_task_id};
use serde_json::Value;

const PLAN: &str = r#"
name = "ids"
[[tasks]]
type = "test-echo"
params = { hello = "world" }
[[tasks]]
type = "test-flaky"
params = { failures = 0 }
[[tasks]]
type = "test-echo"
"#;

fn task_ids(doc: &Value) -> Vec<String> {
    doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn plan_ids_are_v4_and_task_ids_are_the_reference_v5() {
    let s = Scratch::with_plugins(&["test-echo", "test-flaky"]);
    let plan = s.write("p.toml", PLAN);
    let run = s.planrt(&["plan", plan.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    let plan_id = doc["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(plan_id).unwrap().get_version_num(), 4);
    assert_eq!(doc["phase"], "Active");
    for (index, task) in doc["tasks"].as_array().unwrap().iter().enumerate() {
        let task_type = task["type"].as_str().unwrap();
        assert_eq!(
            task["id"],
            reference_task_id(plan_id, task_type, index),
            "task {index}"
        );
        assert_eq!(task["status"], "Pending");
    }

    // A preview makes a fresh plan ID every time, hence fresh task IDs.
    let again = s
        .planrt(&["plan", plan.to_str().unwrap(), "--output", "json"])
        .json();
    assert_ne!(again["id"], doc["id"]);
    assert_ne!(task_ids(&again), task_ids(&doc));
}

#[test]
fn a_saved_plan_runs_with_its_ids_and_the_plugin_sees_them() {
    let s = Scratch::with_plugins(&["test-echo", "test-flaky"]);
    let (saved_path, printed) = s.save_plan(PLAN);
    let saved_file: Value =
        serde_json::from_str(&std::fs::read_to_string(&saved_path).unwrap()).unwrap();
    assert_eq!(saved_file["formatVersion"], 2);
    assert_eq!(saved_file["id"], printed["id"]);
    assert_eq!(saved_file["plugins"]["test-echo"]["witVersion"], "0.3.0");
    assert_eq!(
        saved_file["plugins"]["test-echo"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    let run = s.planrt(&["run", saved_path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["id"], saved_file["id"]);
    assert_eq!(task_ids(&doc), task_ids(&saved_file));
    assert!(
        run.stderr.contains(saved_file["id"].as_str().unwrap()),
        "run logs its plan ID: {}",
        run.stderr
    );

    let echo = &doc["tasks"][0];
    let context = &echo["output"]["context"];
    assert_eq!(context["taskId"], echo["id"]);
    assert_eq!(context["planId"], doc["id"]);
    assert_eq!(
        (context["taskType"].as_str(), context["planIndex"].as_u64()),
        (Some("test-echo"), Some(0))
    );
    assert_eq!(context["attempt"], 1);
    assert_eq!(
        echo["output"]["params"],
        serde_json::json!({"hello": "world"})
    );
    assert_eq!(doc["tasks"][2]["output"]["context"]["planIndex"], 2);

    // The plan is now in the state store: running the file again is refused, and
    // resuming the complete plan runs nothing and keeps the IDs.
    let again = s.planrt(&["run", saved_path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("already exists") && again.stderr.contains("planrt resume"),
        "{}",
        again.stderr
    );
    let plan_id = saved_file["id"].as_str().unwrap();
    let resumed = s.planrt(&["resume", plan_id, "--output", "json"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let resumed = resumed.json();
    assert_eq!(task_ids(&resumed), task_ids(&saved_file));
    assert_eq!(
        resumed["tasks"][0]["attempts"].as_array().unwrap().len(),
        1,
        "nothing ran again"
    );
}

#[test]
fn a_saved_plan_whose_plugin_changed_is_refused() {
    let s = Scratch::with_plugins(&["test-echo"]);
    let (saved_path, _) = s.save_plan("[[tasks]]\ntype = \"test-echo\"\n");
    // Another component now provides test-echo under the same file name.
    s.change_plugin("test-echo");
    let run = s.planrt(&["run", saved_path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("sha256"), "{}", run.stderr);
}

#[test]
fn a_saved_plan_with_a_fixed_plan_id_runs_with_the_reference_task_ids() {
    // The saved plan's IDs are replaced with fixed ones from Python's uuid5: the host
    // must accept exactly those and hand them to the plugin.
    let s = Scratch::with_plugins(&["test-echo"]);
    let (saved_path, _) =
        s.save_plan("[[tasks]]\ntype = \"test-echo\"\n[[tasks]]\ntype = \"test-echo\"\n");
    let mut saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&saved_path).unwrap()).unwrap();
    let vectors: Vec<_> = TASK_ID_VECTORS
        .iter()
        .filter(|(_, task_type, ..)| *task_type == "test-echo")
        .collect();
    let plan_id = vectors[0].0;
    saved["id"] = plan_id.into();
    for (plan, _, index, id) in &vectors {
        assert_eq!(*plan, plan_id);
        saved["tasks"][*index]["id"] = (*id).into();
    }
    let write = |doc: &Value| std::fs::write(&saved_path, doc.to_string()).unwrap();

    // One wrong ID: refused, naming the one it must be.
    let mut wrong = saved.clone();
    wrong["tasks"][1]["id"] = vectors[0].3.into();
    write(&wrong);
    let run = s.planrt(&["run", saved_path.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(vectors[1].3), "{}", run.stderr);

    write(&saved);
    let run = s.planrt(&["run", saved_path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let doc = run.json();
    assert_eq!(doc["id"], plan_id);
    for (_, _, index, id) in &vectors {
        assert_eq!(doc["tasks"][*index]["id"], *id);
        assert_eq!(doc["tasks"][*index]["output"]["context"]["taskId"], *id);
    }
}
