"""Drives berth through testcontainers-python's DockerCompose, as a CI job would drive docker
compose: start (`up --wait`), service host and port (`ps --format json`), exec, logs, stop."""
import os
import sys
import urllib.request

from testcontainers.compose import DockerCompose

compose = DockerCompose(
    sys.argv[1],
    compose_file_name="compose.yaml",
    docker_command_path=os.environ["BERTH"],
    wait=True,
)
compose.start()
try:
    host = compose.get_service_host("web", 8080)
    port = compose.get_service_port("web", 8080)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode().strip()
    out, _err, code = compose.exec_in_container(["cat", "/www/index.html"], "web")
    stdout, _stderr = compose.get_logs("web")
finally:
    compose.stop()
print(f"host={host} port={port} body={body} exec={out.strip()}/{code} logs={'served' in stdout}")
