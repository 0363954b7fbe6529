"""The server's settings: one dataclass whose fields are the `llmclf serve` flags (standard library only)."""

from dataclasses import dataclass, field, fields, replace

from llmclf.config import flag
from llmclf.errors import UserError

# --max-batch-size when it is not given. Batching pays where a batch costs less per text than one text at a time:
# with bf16 matrix units it served 2.3-2.7x the requests of batching off (serve_load-2026-12-02.json, AMX CPU), and
# GPUs are built for batches (not measured here). A CPU running float32 is compute-bound, and padding a batch to
# its longest text costs more than batching saves: 5.2 against 6.4 req/s at concurrency 32
# (serve_load-2026-11-27.json), 1.6 against 2.0 at 8 and 1.9 at 32 on an AVX2-only CPU
# (serve_load-avx2-2026-12-02.json). There the default is 1.
BATCHED_MAX_BATCH_SIZE = 32


@dataclass
class ServeArgs:
    """Where the server listens, how it batches and what it accepts; each field is a `llmclf serve` flag."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind; 127.0.0.1 keeps the server "
                      "private to this machine, 0.0.0.0 opens it to the network"})
    port: int = field(default=8000, metadata={"help": "TCP port (0: any free port)"})
    max_batch_size: int | None = field(default=None, metadata={"help": "most texts in one forward pass; 1 turns "
                                       f"batching off (default: {BATCHED_MAX_BATCH_SIZE} on a GPU or where the "
                                       "model runs bf16, 1 where it runs float32 on a CPU: there batching is slower)"})
    max_wait_ms: float = field(default=5.0, metadata={"help": "how long the first request of a batch waits "
                               "for others to join it (0: take whatever is queued)"})
    max_queue: int = field(default=1024, metadata={"help": "most texts waiting for the model; past it "
                           "requests get 503 with Retry-After"})
    max_texts_per_request: int = field(default=256, metadata={"help": "most texts in one request (413 past it)"})
    max_chars_per_text: int = field(default=50_000, metadata={"help": "most characters in one text (413 past it)"})
    max_body_bytes: int = field(default=8 * 1024 * 1024, metadata={"help": "largest request body, JSON or CSV "
                                "(413 past it)"})
    max_csv_rows: int = field(default=10_000, metadata={"help": "most rows in an uploaded CSV (413 past it)"})
    served_model_name: str | None = field(default=None, metadata={"help": "the model name in API answers "
                                          "(default: the --model directory's name)"})

    def __post_init__(self):
        for name in ("max_batch_size", "max_queue", "max_texts_per_request", "max_chars_per_text",
                     "max_body_bytes", "max_csv_rows"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"{flag(name)} must be at least 1, got {getattr(self, name)}.")
        if not 0 <= self.port <= 65535:
            raise UserError(f"--port must be between 0 and 65535, got {self.port}.")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise UserError(f"--max-wait-ms must be between 0 and 10000, got {self.max_wait_ms}.")
        if self.max_texts_per_request > self.max_queue:
            raise UserError(f"--max-texts-per-request {self.max_texts_per_request} exceeds --max-queue "
                            f"{self.max_queue}: such a request could never be queued; raise --max-queue.")

    def for_classifier(self, classifier) -> "ServeArgs":
        """These settings with --max-batch-size decided for `classifier` (a `llmclf.predict.Classifier`) when it
        was not given: batching on a GPU or in bf16, none on a CPU running float32 (see BATCHED_MAX_BATCH_SIZE)."""
        if self.max_batch_size is not None:
            return self
        device = getattr(classifier, "device", None)  # any object with classify() serves; unknown: batch
        batching_pays = device is None or device.type != "cpu" or getattr(classifier, "bf16", False)
        return replace(self, max_batch_size=BATCHED_MAX_BATCH_SIZE if batching_pays else 1)

    def limits(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("max_")}
