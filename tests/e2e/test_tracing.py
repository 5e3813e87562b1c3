

@pytest.mark.parametrize("otel", [
    {"endpoint": "http://127.0.0.1:6006"},
    {"endpoint": "https://cloud.langfuse.com/api/public/otel/v1/traces",
     "headers": {"Authorization": "os.environ/LANGFUSE_AUTH"}, "sampling_rate": 0.1},
    {"endpoint": "https://otel-collector.example.com:4317", "protocol": "grpc",
     "headers": {"authorization": "os.environ/LANGFUSE_AUTH", "x-tenant": "a"},
     "access_log": True, "metrics": True},
], ids=["http", "langfuse", "grpc-logs-metrics"])
@pytest.mark.parametrize("form", ["static", "dynamic"])
def test_rendered_tracing_passes_envoy_validation(tmp_path, otel, form):
    """Every form of the section renders a bootstrap the real Envoy accepts."""
    cfg = harness.gateway_config("http://127.0.0.1:9", "http://127.0.0.1:9", 4000, 9901,
                                 general_extra={"opentelemetry": otel})
    path = harness.write_yaml(tmp_path / "gateway.yaml", cfg)
    env = harness.provider_env({"LANGFUSE_AUTH": "Basic eA=="})
    if form == "static":
        out = harness.render(path, tmp_path / "envoy.yaml", env=env)
    else:
        r = harness.run_cli("render", "--config", str(path), "--wasm", str(harness.wasm_path()),
                            "--dynamic", str(tmp_path / "dyn"), env=env)
        assert r.returncode == 0, r.stderr
        out = tmp_path / "dyn" / "envoy.yaml"
    v = harness.envoy_validate(out, cwd=tmp_path)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "Deprecated" not in v.stdout + v.stderr, v.stdout + v.stderr
