"""Peer: pytorch/examples' MNIST example (mnist/main.py), plain PyTorch on the CPU.

    python benchmarks/peers/pytorch_mnist.py [--seed S] [--epochs N] [--train-limit N] [--test-limit N]

As the example writes it: images through ToTensor and Normalize((0.1307,),
(0.3081,)) one at a time in a DataLoader (batch 64; on a CPU the example passes
no shuffle flag, so batches come in file order), Net = conv 32@3×3, relu,
conv 64@3×3, relu, max-pool 2, dropout 0.25, dense 128, relu, dropout 0.5,
dense 10, log-softmax; NLL loss, Adadelta lr 1.0, StepLR(step 1, gamma 0.7),
14 epochs, a test pass (batch 1000) after each. Only the data source differs
(the example downloads it through torchvision; here the per-image transform is
the same arithmetic without the PIL round trip). Prints the JSON lines
described in common.py.
"""

from __future__ import annotations

import common

EXAMPLE_EPOCHS = 14
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the example's Normalize constants
TRAIN_BATCH, TEST_BATCH = 64, 1000


def main() -> None:
    options = common.parse_arguments(__doc__.splitlines()[0], EXAMPLE_EPOCHS)
    common.skip_unless_installed("torch")
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.optim as optim
    from torch.optim.lr_scheduler import StepLR

    x_train, y_train, x_test, y_test = common.load_data(options)

    class ImagesAndLabels(torch.utils.data.Dataset):
        """torchvision's MNIST dataset with ToTensor + Normalize: one uint8 image converted per item."""

        def __init__(self, images, labels):
            self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels.astype("int64"))

        def __len__(self):
            return len(self.images)

        def __getitem__(self, index):
            image = self.images[index].to(torch.float32).div(255).unsqueeze(0)
            return (image - MNIST_MEAN) / MNIST_STD, self.labels[index]

    # ---- the example's code
    class Net(nn.Module):
        def __init__(self):
            super(Net, self).__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = self.conv1(x)
            x = F.relu(x)
            x = self.conv2(x)
            x = F.relu(x)
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            x = self.fc1(x)
            x = F.relu(x)
            x = self.dropout2(x)
            x = self.fc2(x)
            output = F.log_softmax(x, dim=1)
            return output

    def train(model, device, train_loader, optimizer):
        model.train()
        for data, target in train_loader:
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            output = model(data)
            loss = F.nll_loss(output, target)
            loss.backward()
            optimizer.step()

    def test(model, device, test_loader):
        model.eval()
        correct = 0
        with torch.no_grad():
            for data, target in test_loader:
                data, target = data.to(device), target.to(device)
                output = model(data)
                pred = output.argmax(dim=1, keepdim=True)
                correct += pred.eq(target.view_as(pred)).sum().item()
        return correct / len(test_loader.dataset)

    torch.manual_seed(options.seed)
    device = torch.device("cpu")
    clock = common.TrainingClock()
    train_loader = torch.utils.data.DataLoader(ImagesAndLabels(x_train, y_train), batch_size=TRAIN_BATCH)
    test_loader = torch.utils.data.DataLoader(ImagesAndLabels(x_test, y_test), batch_size=TEST_BATCH)
    model = Net().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    epochs = int(options.epochs)
    test_accuracy = None
    for epoch in range(1, epochs + 1):
        train(model, device, train_loader, optimizer)
        seconds, test_accuracy = clock.evaluate(lambda: test(model, device, test_loader))
        common.emit(epoch=epoch, seconds=seconds, test_accuracy=test_accuracy)
        scheduler.step()
    # ---- end of the example's code
    common.emit(final=True, epochs=epochs, seconds=clock.seconds(), test_accuracy=test_accuracy)


if __name__ == "__main__":
    main()
