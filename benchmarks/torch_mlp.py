"""The seed's network and recipe in plain PyTorch (eager), for the benchmark's comparison row.

Same layers (784-512-256-128-10, BatchNorm after the first two, dropout 0.3/0.3/0.2),
Adam at 1e-3, cross-entropy, batch 128 shuffled each epoch, the last 10% of the
training set evaluated after every epoch.
"""

from __future__ import annotations

import time

import numpy as np


def build_network():
    import torch
    from torch import nn

    return nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.BatchNorm1d(512, eps=1e-3, momentum=0.01), nn.Dropout(0.3),
        nn.Linear(512, 256), nn.ReLU(), nn.BatchNorm1d(256, eps=1e-3, momentum=0.01), nn.Dropout(0.3),
        nn.Linear(256, 128), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(128, 10),  # logits: softmax lives in the loss
    ).to(torch.float32)


def train(x_fit: np.ndarray, y_fit: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, epochs: int,
          batch_size: int = 128, seed: int = 1) -> list[float]:
    """Train; returns each epoch's wall time (validation included). Labels are class indices."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    network = build_network()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    loss_function = nn.CrossEntropyLoss()
    inputs, labels = torch.from_numpy(x_fit), torch.from_numpy(y_fit.astype(np.int64))
    val_inputs, val_labels = torch.from_numpy(x_val), torch.from_numpy(y_val.astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    epoch_seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        network.train()
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(network(inputs[batch]), labels[batch])
            loss.backward()
            optimizer.step()
        network.eval()
        with torch.no_grad():
            logits = network(val_inputs)
            float(loss_function(logits, val_labels)), float((logits.argmax(1) == val_labels).float().mean())
        epoch_seconds.append(time.perf_counter() - started)
    return epoch_seconds
