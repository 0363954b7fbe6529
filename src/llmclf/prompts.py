"""Prompt templates: the words around a text that the classifier reads, saved with the model and applied by
every entry point (train, evaluate, predict, check, serve, `Classifier`).

    llmclf train --data reviews.csv --prompt-template "Review: {text}\\nSentiment:" --output runs/reviews
    llmclf predict --model smollm2-135m --labels negative,positive --prompt-template chat "Dull."

A template holds `{text}` exactly once and no other placeholder (`{{` and `}}` stand for literal braces; a
written backslash-n stands for a newline, since shells pass real newlines badly). `chat` wraps a question built
from the label names and the text in the backbone's own chat template, ending with the assistant's
generation prompt.

Encoding. A template becomes prefix token ids and suffix token ids around the text's ids, each part tokenized
on its own (`add_special_tokens=False`), with the tokenizer's special start tokens (Llama 3's BOS; SmolLM2 has
none) first. Truncation of every mode cuts the text ids only, so each window is prefix + part of the text +
suffix: the last token, where a decoder classifier pools, is always the template's last token.

>>> encoding = PromptEncoding.build(tokenizer, "Review: {text}\\nSentiment:")   # doctest: +SKIP
>>> encoding.prefix, encoding.suffix                                            # doctest: +SKIP
([11429, 42], [198, 37599, 42])
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from llmclf.errors import UserError
from llmclf.windows import CHARS_PER_TOKEN_BOUND, windows

CHAT = "chat"


def chat_question(labels: list[str]) -> str:
    """The user turn of the `chat` template, `{text}` standing for the text."""
    return f"Classify the text as one of: {', '.join(labels)}.\n\nText: {{text}}"


def plain_question(labels: list[str]) -> str:
    """The zero-shot template for a backbone without a chat template (braces in label names escaped)."""
    names = ", ".join(labels).replace("{", "{{").replace("}", "}}")
    return f"Classify the text as one of: {names}.\n\nText: {{text}}\nAnswer:"


def split_template(template: str, what: str = "--prompt-template") -> tuple[str, str]:
    """(text before `{text}`, text after it), with `{{`/`}}` unescaped and a written `\\n` read as a newline.

    >>> split_template("Review: {text}\\\\nSentiment:")
    ('Review: ', '\\nSentiment:')
    >>> split_template("{{x}} {text}")
    ('{x} ', '')
    """
    if not isinstance(template, str):
        raise UserError(f"{what} must be a string holding {{text}}, got {template!r}.")
    try:
        pieces = list(string.Formatter().parse(template.replace("\\n", "\n")))
    except ValueError as exc:
        raise UserError(f"{what} {template!r}: {exc}; write literal braces as {{{{ and }}}}.") from None
    fields = [(name, spec, conversion) for _, name, spec, conversion in pieces if name is not None]
    others = sorted({"{" + name + "}" for name, _, _ in fields if name != "text"})
    if others:
        raise UserError(f"{what} {template!r}: unknown placeholder(s) {', '.join(others)}; the only one is "
                        "{text} (write literal braces as {{ and }}).")
    if len(fields) != 1 or fields[0][1] or fields[0][2]:
        raise UserError(f"{what} {template!r}: put {{text}} in it exactly once (plain, no format spec), e.g. "
                        "\"Review: {text}\\nSentiment:\", or use chat.")
    before, after, seen = [], [], False
    for literal, name, _, _ in pieces:
        (after if seen else before).append(literal)
        seen = seen or name is not None
    return "".join(before), "".join(after)


def check_template(template: str | None, what: str = "--prompt-template") -> None:
    """Raises UserError for a malformed template (`chat` needs a tokenizer: see PromptEncoding.build)."""
    if template is not None and template != CHAT:
        split_template(template, what)


def chat_parts(tokenizer, labels: list[str]) -> tuple[str, str]:
    """The backbone's chat template around a user turn asking for one of `labels`: (before, after) the text."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise UserError("--prompt-template chat: this backbone's tokenizer has no chat template; give a template "
                        "such as \"Review: {text}\\nSentiment:\" instead.")
    marker = "\x00LLMCLF_TEXT\x00"
    question = chat_question(labels).replace("{text}", marker)
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                             tokenize=False)
    if rendered.count(marker) != 1:
        raise UserError("--prompt-template chat: the backbone's chat template does not keep the user's text; give "
                        "a template such as \"Review: {text}\\nSentiment:\" instead.")
    before, after = rendered.split(marker)
    return before, after


@dataclass
class PromptEncoding:
    """Token ids a text's ids are wrapped in: every window is prefix + text ids + suffix."""

    prefix: list[int] = field(default_factory=list)
    suffix: list[int] = field(default_factory=list)
    lead: str = ""
    """Spaces that end the template's prefix: prepended to the text before tokenizing, so ' great' is one token
    as in running prose (a BPE tokenizer attaches a space to the word after it)."""
    tail: str = ""
    """The template's text after `{text}` (decides whether a label word follows with a space)."""
    template: str | None = None

    @classmethod
    def build(cls, tokenizer, template: str | None = None, labels: list[str] | None = None) -> "PromptEncoding":
        """The encoding of `template` (None: the text alone; `chat`: the backbone's chat template asking for
        one of `labels`) for `tokenizer`."""
        special = list(tokenizer("", add_special_tokens=True)["input_ids"])
        if template is None:
            return cls(special, [])
        if template == CHAT:
            before, after = chat_parts(tokenizer, list(labels or []))
            # A rendered chat template already holds whatever start tokens the backbone wants.
            special = []
        else:
            before, after = split_template(template)
        stripped = before.rstrip(" ")
        lead = before[len(stripped):]

        def ids(part: str) -> list[int]:
            return list(tokenizer(part, add_special_tokens=False)["input_ids"]) if part else []

        return cls(special + ids(stripped), ids(after), lead, after if template != CHAT else "\n", template)

    def text_ids(self, tokenizer, text: str) -> list[int]:
        return list(tokenizer(self.lead + text if self.lead else text, add_special_tokens=False)["input_ids"])

    def room(self, max_length: int) -> int:
        """Text tokens a window holds; a UserError when the template leaves none."""
        room = max_length - len(self.prefix) - len(self.suffix)
        if room < 1:
            raise UserError(f"--max-length {max_length} leaves no room for text after the prompt template's "
                            f"{len(self.prefix) + len(self.suffix)} tokens; raise --max-length or shorten the template.")
        return room


def training_windows(texts: list[str], tokenizer, max_length: int, truncation: str = "head",
                     prompt: PromptEncoding | None = None) -> list[list[int]]:
    """One window per text as `Classifier` cuts it (the template kept whole, only the text cut): the head_tail
    window for truncation head_tail, else the head window (a chunks model trains on each text's start)."""
    prompt = prompt or PromptEncoding.build(tokenizer)
    mode = "head_tail" if truncation == "head_tail" else "head"
    cut = max_length * CHARS_PER_TOKEN_BOUND  # a huge text is not tokenized whole (as in Classifier)
    texts = [t if len(t) <= 2 * cut else (t[:cut] + t[-cut:] if mode == "head_tail" else t[:cut])
             for t in (str(t) for t in texts)]
    encoded = tokenizer([prompt.lead + t for t in texts], add_special_tokens=False)["input_ids"]
    filler = [tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id]
    # An empty text alone gets one token to pool, as in Classifier._encode; with a template, the template's.
    return [windows(list(ids) or ([] if prompt.template is not None else filler), max_length, mode, prompt.prefix,
                    suffix=prompt.suffix)[0] for ids in encoded]
