"""llmclf: decoder LLMs as text classifiers."""

__version__ = "0.1.0"
