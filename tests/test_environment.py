from agent_sandbox.agent.environment import detect_environment, environment_details


def test_detects_modal_docker_and_local(tmp_path):
    assert detect_environment({"MODAL_TASK_ID": "ta-1"}, tmp_path) == "modal"
    assert detect_environment({}, tmp_path) == "local"
    (tmp_path / ".dockerenv").touch()
    assert detect_environment({}, tmp_path) == "docker"
    other = tmp_path / "cg"
    (other / "proc/1").mkdir(parents=True)
    (other / "proc/1/cgroup").write_text("0::/system.slice/docker-abc.scope\n")
    assert detect_environment({}, other) == "docker"
    assert environment_details("modal", {"MODAL_TASK_ID": "ta-1"})["modal_task_id"] == "ta-1"
