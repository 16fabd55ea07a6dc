"""What the tutorial-CNN tests of both converters share (ONNX, TFLite): the
data, the float training in PyTorch, the bar for agreement."""
import numpy as np

AGREEMENT = 0.98  # of held-out argmaxes, int8 against onnxruntime / the TFLite interpreter
LR = 0.001  # fine-tuning every layer of the tutorial CNN (see test_tutorial_cnn_onnx's training test)


def digits_split():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(x))
    return x[order[:1400]], d.target[order[:1400]], x[order[1400:]], d.target[order[1400:]]


def train_torch(torch, model, x, y, epochs=30):
    torch.manual_seed(0)
    torch.set_num_threads(1)  # small batches: threads only contend
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()
