#!/usr/bin/env python3
"""The scoring side of the fake workspace (tests/fake_az/az): Azure's managed online endpoint front end, as far as the
stage scripts' traffic checks (scripts/traffic.py) see it, answering for the endpoints in $FAKE_AZ_STATE.

    python tests/fake_az/front_end.py    # prints "port N" once it listens on 127.0.0.1:N

The fake az gives each endpoint the scoring URI http://127.0.0.1:N/<endpoint>/score when FAKE_AZ_FRONT_END names this
server (http://127.0.0.1:N). Each POST there is answered as Azure's front end answers it (the rules aml_local's
router keeps, aml_local/endpoints/router/server.py): 401 without `Authorization: Bearer <key>` (the scenario's keys, as
get-credentials gives them); the deployment named by the `azureml-model-deployment` header, else one drawn by the
endpoint's traffic weights as the fake az last set them; 404 when there is none; then the scenario's `invoke` answer
for that deployment (a prediction of 7 by default; an `error` becomes a 424 with the message), with the deployment
in the `azureml-model-deployment` header of the answer. The state file is read again for every request, so traffic
moves as soon as the fake az's `online-endpoint update` has written it.
"""

import json
import os
import random
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def load(variable: str) -> dict:
    try:
        return json.loads(Path(os.environ[variable]).read_text())
    except (KeyError, OSError, ValueError):
        return {}


class FrontEnd(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The status line and headers go out in one write and the body in another: with Nagle on, the body waits
    # for the client's delayed ACK (40 ms a request on Linux, 9 s for the 200 of one traffic check).
    disable_nagle_algorithm = True

    def log_message(self, *_):
        pass

    def answer(self, status: int, document: dict, deployment: str | None = None):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if deployment:
            self.send_header("azureml-model-deployment", deployment)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        scenario = load("FAKE_AZ_SCENARIO")
        keys = scenario.get("keys", {"primaryKey": "fake-primary-key", "secondaryKey": "fake-secondary-key"})
        name, _, rest = self.path.strip("/").partition("/")
        endpoint = load("FAKE_AZ_STATE").get("endpoints", {}).get(name)
        if rest != "score" or endpoint is None:
            return self.answer(404, {"message": f"no endpoint at {self.path}"})
        if self.headers.get("Authorization") not in {f"Bearer {key}" for key in keys.values()}:
            return self.answer(401, {"message": "missing or invalid key"})
        deployment = self.headers.get("azureml-model-deployment")
        if deployment is None:
            weighted = [(d, p) for d, p in endpoint["traffic"].items() if p > 0]
            if weighted:
                deployment = random.choices([d for d, _ in weighted], [p for _, p in weighted])[0]
        if deployment not in endpoint["deployments"]:
            return self.answer(404, {"message": "no valid deployment to route to"})
        answer = scenario.get("invoke", {}).get(deployment, {"predictions": [7]})
        if "error" in answer:
            return self.answer(424, {"message": answer["error"]}, deployment)
        self.answer(200, {"predictions": answer["predictions"], "probabilities": [[0.1] * 10]}, deployment)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FrontEnd)
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
