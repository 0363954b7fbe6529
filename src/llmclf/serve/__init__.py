"""`llmclf serve`: an HTTP classification server with dynamic batching, and a web page to try the model.

    llmclf serve --model runs/imdb --port 8000
    curl -s localhost:8000/classify -H 'content-type: application/json' -d '{"input": ["Superb!", "Dull."]}'

This module (with `settings.py`, ServeArgs) holds what the CLI needs to build its parser and start the server, and imports only the standard
library (and llmclf's own light modules): `llmclf --help` must not pay for FastAPI or torch. The app lives in
`app.py` (wiring), `vllm_routes.py` and `routes.py` (endpoints), `schemas.py` (request and response models),
`batching.py` (the queue in front of the model) and `errors.py` (JSON errors, request limits).
"""

import socket
import sys
from pathlib import Path

from llmclf.errors import UserError
from llmclf.serve.settings import BATCHED_MAX_BATCH_SIZE, ServeArgs

__all__ = ["ServeArgs", "create_app", "listen_socket", "run_server"]

SERVE_EXTRA = "pip install 'llmclf[serve]'"
# Imported only when an app is built; a missing one is the user's install, not a bug.
SERVE_PACKAGES = ("fastapi", "starlette", "pydantic", "fastapi_offline", "uvicorn")


def create_app(classifier, args: ServeArgs | None = None, model_dir: str | Path | None = None,
               model_name: str | None = None):
    """The FastAPI app serving `classifier` (a `llmclf.predict.Classifier`) under the limits of `args`.

    `model_dir` is where /v1/model finds metrics.json, llmclf_config.yaml, the card and plots.

    >>> app = create_app(Classifier.from_pretrained("runs/imdb"), ServeArgs(max_batch_size=16))  # doctest: +SKIP
    """
    try:
        from llmclf.serve.app import build_app
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVE_PACKAGES:
            raise
        raise UserError(f"llmclf serve needs {exc.name}; run `{SERVE_EXTRA}`.") from None
    return build_app(classifier, args or ServeArgs(), model_dir, model_name)


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port as uvicorn binds one (SO_REUSEADDR); a port in use or an address this
    machine does not have is a UserError."""
    sock = None
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); choose "
                        "another --port (0: any free port) or --host.") from None
    return sock


def run_server(model: str, args: ServeArgs, threshold: float | None = None, min_confidence: float | None = None,
               **options) -> None:
    """Load `model` (a directory written by `llmclf train`, or a shipped model's name) and serve it until
    SIGTERM/SIGINT, answering the requests in flight before exiting. `options` go to Classifier.from_pretrained
    (device, truncation, max_length, precision, trust_remote_code, allow_pickle)."""
    try:
        import uvicorn
    except ImportError:
        raise UserError(f"llmclf serve needs uvicorn; run `{SERVE_EXTRA}`.") from None
    from llmclf.artifacts import SHIPPED_MODELS, model_dir
    from llmclf.predict import Classifier

    for option, value in (("--threshold", threshold), ("--min-confidence", min_confidence)):
        if value is not None and not 0 < value <= 1:
            raise UserError(f"{option} must be in (0, 1], got {value}.")
    # Bound before the model loads and handed to uvicorn: a taken port is one line at once, not uvicorn's log
    # and exit code 3 after the load.
    sock = listen_socket(args.host, args.port)
    classifier = Classifier.from_pretrained(model, batch_size=args.max_batch_size or BATCHED_MAX_BATCH_SIZE,
                                            threshold=threshold, min_confidence=min_confidence, **options)
    args = args.for_classifier(classifier)
    directory = model_dir(model)
    name = args.served_model_name or (model if model in SHIPPED_MODELS else directory.resolve().name)
    app = create_app(classifier, args, model_dir=directory, model_name=name)
    port = sock.getsockname()[1]  # the real one with --port 0
    numbers = classifier.quantize or ("bf16" if classifier.bf16 else "float32")
    batching = f"batches of up to {args.max_batch_size}" if args.max_batch_size > 1 else "no batching"
    print(f"llmclf: serving {name} ({', '.join(classifier.labels)}) on {classifier.device} ({numbers}, {batching}) "
          f"at http://{args.host}:{port}/  (API docs at /docs)", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=args.host, port=port, log_level="info", access_log=False,
                            timeout_graceful_shutdown=30)
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
