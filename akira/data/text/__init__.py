"""Text corpora for language modelling: sources, tokenizers, memmap token cache, windows, metrics.

Entry point: `TextDataModule` (imports Lightning; import it from `akira.data.text.datamodule` or here).
The other modules (`sources`, `hub`, `tokenizer`, `cache`, `windows`, `metrics`) are plain Python/torch.
"""
from .cache import TokenCache, token_cache
from .datamodule import TextDataModule
from .metrics import NLLSum, masked_nll_sum, perplexities, word_perplexity
from .sources import count_words, iter_documents
from .tokenizer import BPETokenizer, ByteTokenizer, GPT2Tokenizer, load_gpt2, train_bpe
from .windows import EvalWindows, TrainWindows, eval_windows

__all__ = [
    "BPETokenizer", "ByteTokenizer", "EvalWindows", "GPT2Tokenizer", "NLLSum", "TextDataModule", "TokenCache",
    "TrainWindows", "count_words", "eval_windows", "iter_documents", "load_gpt2", "masked_nll_sum", "perplexities",
    "token_cache", "train_bpe", "word_perplexity",
]
