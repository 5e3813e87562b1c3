"""The module as an OCI image (`llm-gateway oci`, `make oci`): reproducible, in the Wasm
image format Istio pulls (compat: one tar+gzip layer holding plugin.wasm), and round-tripped
through a real registry (Debian's docker-registry, the CNCF distribution registry, on
127.0.0.1) with a real OCI client (oras): pushed, pulled back, same digest, same bytes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import oras.client
import oras.container
import pytest

import harness
from harness import run_cli

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.fixture(scope="module", autouse=True)
def artefacts():
    harness.require_artefacts()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_image(out: Path, tag: str = "test") -> tuple:
    """Runs `llm-gateway oci`; returns (printed digest, index.json, blob reader)."""
    r = run_cli("oci", "--wasm", str(harness.wasm_path()), "--out", str(out), "--tag", tag)
    assert r.returncode == 0, r.stderr
    digest = r.stdout.strip()
    index = json.loads((out / "index.json").read_text())

    def blob(d: str) -> bytes:
        return (out / "blobs" / "sha256" / d.removeprefix("sha256:")).read_bytes()
    return digest, index, blob


def test_the_image_is_reproducible_and_istio_shaped(tmp_path):
    digest, index, blob = build_image(tmp_path / "a")
    again, _, blob_again = build_image(tmp_path / "b")
    assert digest == again, "two builds of the same module differ"
    assert json.loads((tmp_path / "a" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    [entry] = index["manifests"]
    assert entry["digest"] == digest and entry["mediaType"] == MANIFEST_TYPE
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "test"
    manifest_bytes = blob(digest)
    assert sha256(manifest_bytes) == digest
    manifest = json.loads(manifest_bytes)
    assert manifest["annotations"] == {"module.wasm.image/variant": "compat"}
    [layer] = manifest["layers"]
    assert layer["mediaType"] == LAYER_TYPE
    layer_bytes = blob(layer["digest"])
    assert layer_bytes == blob_again(layer["digest"])
    assert sha256(layer_bytes) == layer["digest"] and len(layer_bytes) == layer["size"]
    with tarfile.open(fileobj=io.BytesIO(layer_bytes), mode="r:gz") as tar:
        [member] = tar.getmembers()
        assert member.name == "plugin.wasm" and member.isfile()
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
        assert tar.extractfile(member).read() == harness.wasm_path().read_bytes()
    config = json.loads(blob(manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == [sha256(gzip.decompress(layer_bytes))]


def test_istio_resources_load_the_image_by_digest(tmp_path):
    """`render-istio` with the oci:// URL `make oci` documents: valid Istio resources whose
    module is fetched by the Istio agent from that URL."""
    from test_istio import base_config, render_istio, validate_strictly
    digest, _, _ = build_image(tmp_path / "image")
    url = f"oci://registry.example.com/llm-gateway@{digest}"
    files = render_istio(tmp_path, base_config(), url, None)
    for name, docs in files.items():
        if name != "gateway-values.yaml":
            for doc in docs:
                validate_strictly(doc)
    codes = [p["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]
             for p in files["envoyfilter.yaml"][0]["spec"]["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG"]
    assert len(codes) == 2
    for code in codes:
        assert code["remote"]["http_uri"]["uri"] == url
    assert "volumes" not in files["gateway-values.yaml"][0], "an image needs nothing mounted"


def test_the_committed_istio_files_pin_this_checkouts_module(tmp_path):
    """The committed envoy/istio/ files load the image of the module this checkout builds,
    by digest (the build is reproducible): `make render-istio` after every new module."""
    digest, _, _ = build_image(tmp_path / "image")
    text = (harness.REPO_ROOT / "envoy" / "istio" / "envoyfilter.yaml").read_text()
    url = f"oci://registry.example.com/llm-gateway@{digest}"
    assert text.count(url) == 2, f"envoy/istio/ does not load {url}: run `make render-istio`"


class Registry:
    """Debian's docker-registry on 127.0.0.1, with its storage and config in a temp dir,
    stopped by its PID."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        if not Path(binary).exists():
            pytest.fail("the `docker-registry` binary is missing: `make e2e` installs Debian's docker-registry package")
        self.port = harness.free_port()
        config = tmp / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {tmp / 'storage'}}}}}\n"
            f"http: {{addr: '127.0.0.1:{self.port}'}}\n")
        self.log = (tmp / "registry.log").open("w")
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (tmp / "registry.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("the registry did not answer on /v2/")

    def stop(self) -> None:
        harness.stop_process(self.proc)
        self.log.close()


@pytest.fixture
def registry(tmp_path):
    r = Registry(tmp_path)
    yield r
    r.stop()


def test_push_and_pull_back_through_a_registry(tmp_path, registry):
    digest, _, blob = build_image(tmp_path / "image", tag="0.1.0")
    manifest_bytes = blob(digest)
    manifest = json.loads(manifest_bytes)
    host = f"127.0.0.1:{registry.port}"
    client = oras.client.OrasClient(hostname=host, insecure=True)
    target = oras.container.Container(f"{host}/llm-gateway:0.1.0")
    for descriptor in [manifest["config"], *manifest["layers"]]:
        path = tmp_path / "image" / "blobs" / "sha256" / descriptor["digest"].removeprefix("sha256:")
        r = client.upload_blob(str(path), target, descriptor)
        assert r.status_code in (200, 201, 202), r.text
    # The manifest goes up as its own bytes: its digest is the one `oci` printed.
    r = client.do_request(f"http://{target.manifest_url()}", "PUT", data=manifest_bytes,
                          headers={"Content-Type": MANIFEST_TYPE})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest

    # Pulled back by digest, as Istio does with oci://<registry>/llm-gateway@<digest>.
    by_digest = oras.container.Container(f"{host}/llm-gateway@{digest}")
    pulled = client.get_manifest(by_digest, allowed_media_type=[MANIFEST_TYPE])
    assert pulled == manifest
    r = client.do_request(f"http://{by_digest.manifest_url()}", "GET", headers={"Accept": MANIFEST_TYPE})
    assert sha256(r.content) == digest and r.content == manifest_bytes
    [layer] = pulled["layers"]
    out = client.download_blob(by_digest, layer["digest"], str(tmp_path / "pulled" / "layer.tar.gz"))
    layer_bytes = Path(out).read_bytes()
    assert sha256(layer_bytes) == layer["digest"]
    with tarfile.open(fileobj=io.BytesIO(layer_bytes), mode="r:gz") as tar:
        assert tar.extractfile("plugin.wasm").read() == harness.wasm_path().read_bytes()
    assert client.get_tags(target) == ["0.1.0"]
