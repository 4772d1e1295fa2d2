"""docker-compose.yml: `docker compose config` accepts it (where the compose plugin is installed),
and it says what the deployment needs (AOF, a GPU reservation and a CPU variant, volumes)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.environment import missing

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
def test_docker_compose_config_accepts_it(profile: str) -> None:
    if not _compose_available():  # CI installs the plugin (.ci/run): there this fails
        missing("the docker compose plugin is not installed")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--profile", profile, "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_compose_file_structure() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert set(services) == {"redis", "api", "worker", "worker-cpu"}
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["worker"]["profiles"] == ["gpu"] and services["worker-cpu"]["profiles"] == ["cpu"]
    assert "deploy" not in services["worker-cpu"]
    for name in ("api", "worker", "worker-cpu"):
        service = services[name]
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert "dockerfile_inline" in service["build"]
    assert "create_app" in " ".join(services["api"]["command"])
    assert set(spec["volumes"]) >= {"redis-data", "hf-cache"}
