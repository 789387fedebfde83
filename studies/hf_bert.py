"""A Hugging Face setup as a user writes it for Trainer: model_init, datasets of dict
samples, compute_metrics and TrainingArguments; here a 2-layer BERT-style classifier
built from a config (no download) on synthetic token ids. The label says whether
token 5 appears in the sequence."""

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

from autobatch.integrations.transformers import workload as trainer_workload

SEQ, VOCAB = 16, 32


class Tokens(Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(6, VOCAB, (n, SEQ), generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)
        where = torch.randint(0, SEQ, (n,), generator=g)
        rows = self.labels.nonzero().squeeze(1)
        self.ids[rows, where[rows]] = 5

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long),
                "labels": self.labels[i]}


def model_init():
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=SEQ, num_labels=2)
    return BertForSequenceClassification(config)


def compute_metrics(prediction):
    logits, labels = prediction
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def workload():
    args = TrainingArguments(output_dir="hf-out", per_device_train_batch_size=32,
                             learning_rate=1e-3, per_device_eval_batch_size=256,
                             report_to="none")
    return trainer_workload(model_init=model_init, train_dataset=Tokens(2048, seed=1),
                            eval_dataset=Tokens(512, seed=2), compute_metrics=compute_metrics,
                            metric="eval_accuracy", args=args, name="hf-bert-tokens")
