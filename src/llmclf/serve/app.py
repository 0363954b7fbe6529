"""The FastAPI app: the shared state, the batcher's lifespan, the body limit, the JSON error handlers, the
routers, the offline API docs and the web page's static files. `llmclf serve` runs it under uvicorn.

    llmclf serve --model runs/imdb --port 8000
"""

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from llmclf.serve.routes import STATIC
from llmclf.serve.routes import router as llmclf_router
from llmclf.serve.vllm_routes import router as vllm_router
from llmclf.serve.settings import ServeArgs
from llmclf.serve.batching import Batcher
from llmclf.serve.docs import add_docs
from llmclf.serve.errors import BodyLimit, add_error_handlers
from llmclf.serve.state import ServeState, count_tokens


def build_app(classifier, args: ServeArgs, model_dir: str | Path | None, model_name: str | None) -> FastAPI:
    """What `llmclf.serve.create_app` returns, once it has checked that the serve extra is installed."""
    args = args.for_classifier(classifier)
    model_dir = Path(model_dir) if model_dir is not None else None
    name = model_name or args.served_model_name or (model_dir.name if model_dir else "model")
    batcher = Batcher(count_tokens(classifier), args.max_batch_size, args.max_wait_ms, args.max_queue)
    state = ServeState(classifier, args, name, model_dir, batcher)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="llmclf", version=_version(), docs_url=None, redoc_url=None, lifespan=lifespan,
                  description=f"Text classification with `{name}` (labels: {', '.join(classifier.labels)}). The "
                              "page at `/` tries it; `/classify` speaks vLLM's classification API.")
    app.state.llmclf, app.state.batcher = state, batcher
    add_docs(app)
    app.add_middleware(BodyLimit, max_bytes=args.max_body_bytes)
    add_error_handlers(app)
    app.include_router(vllm_router)
    app.include_router(llmclf_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llmclf")
    except PackageNotFoundError:
        return "0"
