"""SA-ResNet50 (Shuffle Attention at every residual block) trained on a TFDS dataset.

    python examples/sa_resnet50_tfds.py --dataset cifar10 --epochs 10
    python examples/sa_resnet50_tfds.py --dataset fashion_mnist --epochs 1 --train-size 2000  # offline

TFDS datasets other than fashion_mnist are downloaded by TFDS on first use (online), or read from a
prepared ``--data-dir``. ResNet-50 trains at about 200 images/s on a 2-core CPU: use a GPU for real
runs (mixed precision is picked automatically there).
"""

import argparse

import keras

import keras_attn
from search.data import load_dataset
from search.training import compile_model, resolve_precision, set_precision

parser = argparse.ArgumentParser()
parser.add_argument("--dataset", default="cifar10")
parser.add_argument("--data-dir", default=None)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--train-size", type=int, default=None)
parser.add_argument("--groups", type=int, default=64, help="SA groups G (paper: 64 for ResNet-50)")
args = parser.parse_args()

set_precision(resolve_precision("auto"))  # mixed_float16 on a GPU, float32 on a CPU
data = load_dataset(args.dataset, data_dir=args.data_dir, image_size=32, train_size=args.train_size,
                    augment=True)
model = keras_attn.build_model(
    "resnet50",
    input_shape=data.input_shape,
    num_classes=data.num_classes,
    attention="sa",
    placement="block",
    attention_kwargs={"groups": args.groups},
    bn_momentum=0.9,  # from scratch: Keras' 0.99 moving statistics lag a short run
)
keras_attn.print_attention_summary(model)  # 16 SA layers, 708 parameters for G=64
compile_model(model, optimizer="sgd", learning_rate=0.1, epochs=args.epochs,
              steps_per_epoch=data.steps_per_epoch["train"])
model.fit(data.train, validation_data=data.val, epochs=args.epochs, verbose=fit_verbosity())
print(model.evaluate(data.test, verbose=0, return_dict=True))
model.save("sa_resnet50.keras")
