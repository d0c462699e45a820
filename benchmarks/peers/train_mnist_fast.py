"""Peer: tuomaso/train_mnist_fast's final 1-epoch recipe (8_Final_00s76.ipynb), plain PyTorch on the CPU.

    python benchmarks/peers/train_mnist_fast.py [--seed S] [--epochs N] [--train-limit N] [--test-limit N]

As the notebook writes it: the whole data set preloaded as normalised tensors
(0.1307/0.3081, shuffled once when saved), Net = conv 24@5×5, max-pool 2, relu,
conv 32@3×3, max-pool 2, relu, dense 256, relu, dense 10, log-softmax; NLL loss,
batches of 256 sliced in order, Adam (betas 0.7/0.9) under OneCycleLR to 1e-2
(cycle_momentum off), 1 epoch, then one test pass (batch 2000). Only the data
source differs. Prints the JSON lines described in common.py.
"""

from __future__ import annotations

import common
import numpy as np

RECIPE_EPOCHS = 1
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # data_saver.py's Normalize constants


def main() -> None:
    options = common.parse_arguments(__doc__.splitlines()[0], RECIPE_EPOCHS)
    common.skip_unless_installed("torch")
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.optim as optim
    from torch.optim.lr_scheduler import OneCycleLR

    x_train, y_train, x_test, y_test = common.load_data(options)
    torch.manual_seed(options.seed)

    # data_saver.py: normalised once and saved in one shuffled order, before any timing.
    def normalised(images: np.ndarray):
        return ((torch.from_numpy(images).to(torch.float32) / 255 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)

    order = torch.randperm(len(x_train))
    train_data, train_labels = normalised(x_train)[order], torch.from_numpy(y_train.astype("int64"))[order]
    test_data, test_labels = normalised(x_test), torch.from_numpy(y_test.astype("int64"))

    # ---- the notebook's code
    batch_size, test_batch_size, epochs, lr = 256, 2000, common.whole_if_integral(options.epochs), 1e-2

    class Net(nn.Module):
        def __init__(self):
            super(Net, self).__init__()
            self.conv1 = nn.Conv2d(1, 24, 5, 1)
            self.conv2 = nn.Conv2d(24, 32, 3, 1)
            self.fc1 = nn.Linear(800, 256)
            self.fc2 = nn.Linear(256, 10)

        def forward(self, x):
            x = self.conv1(x)
            x = F.max_pool2d(x, 2)
            x = F.relu(x)
            x = self.conv2(x)
            x = F.max_pool2d(x, 2)
            x = F.relu(x)
            x = torch.flatten(x, 1)
            x = self.fc1(x)
            x = F.relu(x)
            x = self.fc2(x)
            output = F.log_softmax(x, dim=1)
            return output

    def train(model, optimizer, scheduler, epochs):
        model.train()
        batches_per_epoch = (len(train_data) - 1) // batch_size + 1
        for i in range(int(epochs * batches_per_epoch)):
            i = i % batches_per_epoch
            data = train_data[batch_size * i:batch_size * (i + 1)]
            target = train_labels[batch_size * i:batch_size * (i + 1)]
            optimizer.zero_grad()
            output = model(data)
            loss = F.nll_loss(output, target)
            loss.backward()
            optimizer.step()
            scheduler.step()

    def test(model):
        model.eval()
        correct = 0
        with torch.no_grad():
            # The notebook scores whole batches of 2000 only; a smoke run's smaller test set is one batch.
            batch = min(test_batch_size, len(test_data))
            for i in range(len(test_data) // batch):
                data = test_data[batch * i:batch * (i + 1)]
                target = test_labels[batch * i:batch * (i + 1)]
                pred = model(data).argmax(dim=1, keepdim=True)
                correct += pred.eq(target.view_as(pred)).sum().item()
        return correct / len(test_labels)

    clock = common.TrainingClock()
    model = Net()
    optimizer = optim.Adam(model.parameters(), lr=lr, betas=(0.7, 0.9))
    scheduler = OneCycleLR(optimizer, max_lr=lr, total_steps=int(((len(train_data) - 1) // batch_size + 1) * epochs),
                           cycle_momentum=False)
    train(model, optimizer, scheduler, epochs)
    seconds, test_accuracy = clock.evaluate(lambda: test(model))
    # ---- end of the notebook's code
    common.emit(epoch=epochs, seconds=seconds, test_accuracy=test_accuracy)
    common.emit(final=True, epochs=epochs, seconds=seconds, test_accuracy=test_accuracy)


if __name__ == "__main__":
    main()
