"""Tiny models built from a config (no hub download): a word-level tokenizer trained on the fly,
a 2-layer BERT classifier and a 2-layer GPT-2. Used by the tests and the mitigation experiment,
where a real pretrained model would only add minutes.
"""

from __future__ import annotations

import re

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[BOS]"]


def word_tokenizer(texts: list[str]):
    """A ``PreTrainedTokenizerFast`` whose vocabulary is every lower-cased word in ``texts``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    vocab = {tok: i for i, tok in enumerate(SPECIALS + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", bos_token="[BOS]")  # fmt: skip


def tiny_bert_classifier(tokenizer, num_labels: int = 2, seed: int = 0, hidden: int = 32):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=128, num_labels=num_labels,
                        pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return BertForSequenceClassification(config)


def tiny_gpt2(tokenizer, seed: int = 0, hidden: int = 32):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=hidden, n_layer=2,
                        n_head=2, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return GPT2LMHeadModel(config)
