"""Look at MNIST before training on it, and write a request for any test image:

    python src/explore.py                    # pictures and class counts into outputs/explore/
    python src/explore.py --sample 42        # outputs/explore/request-test-42.json, and its label

The pictures: samples.png (ten images of each digit with their labels), mean_images.png (the mean image per
digit), class_counts.png with class_counts.csv and class_counts.json (images per digit, train and test).
A --sample request is the endpoint's input format, {"data": [[784 pixel values / 255]]}, as in
endpoints/sample-request.json (test image 0); post it with scripts/invoke.sh FILE.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

import mnist_data


def fail(message):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Explore MNIST: pictures, class counts, a request for one image.")
    parser.error = fail  # one line, not argparse's usage text
    parser.add_argument("--data-folder", help="MNIST folder (default: $MNIST_DATA, then the download cache)")
    parser.add_argument("--output", default="outputs/explore", help="folder for the pictures and counts")
    parser.add_argument("--sample", type=int, metavar="N", help="write the request JSON for test image N only")
    parser.add_argument("--request-file", help="where --sample writes (default: OUTPUT/request-test-N.json)")
    return parser.parse_args(argv)


def class_counts(mnist):
    return {split: np.bincount(getattr(mnist, f"{split}_labels"), minlength=10).tolist() for split in ("train", "test")}


def write_counts(counts, output: Path):
    with open(output / "class_counts.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["digit", "train", "test"])
        writer.writerows([digit, counts["train"][digit], counts["test"][digit]] for digit in range(10))
    (output / "class_counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    print("digit " + " ".join(f"{d:>6}" for d in range(10)) + "   total")
    for split, row in counts.items():
        print(f"{split:<5} " + " ".join(f"{n:>6,}" for n in row) + f"  {sum(row):>6,}")


def write_pictures(mnist, output: Path):
    import plots  # matplotlib: not needed for --sample

    counts = class_counts(mnist)
    write_counts(counts, output)
    pictures = {
        "samples.png": plots.digit_grid_figure(mnist.train_images, mnist.train_labels),
        "mean_images.png": plots.mean_images_figure(mnist.train_images.astype(np.float32), mnist.train_labels),
        "class_counts.png": plots.class_counts_figure(counts["train"], counts["test"]),
    }
    for name, figure in pictures.items():
        figure.savefig(output / name, dpi=80)
        print(f"wrote {output / name}")


def write_sample(mnist, index: int, path: Path):
    count = len(mnist.test_images)
    if not 0 <= index < count:
        fail(f"--sample {index}: expected a test image index from 0 to {count - 1}")
    # pixel / 255 as float64, exactly the numbers in endpoints/sample-request.json for image 0.
    pixels = (mnist.test_images[index].reshape(784) / 255.0).tolist()
    path.write_text(json.dumps({"data": [pixels]}) + "\n")
    print(f"wrote {path}: MNIST test image {index}, label {int(mnist.test_labels[index])}")


def main(argv=None):
    args = parse_args(argv)
    try:
        mnist = mnist_data.load_mnist(mnist_data.resolve_data_folder(args.data_folder))
    except mnist_data.MnistDataError as e:
        fail(e)
    output = Path(args.output)
    request_file = Path(args.request_file) if args.request_file else output / f"request-test-{args.sample}.json"
    try:
        (request_file.parent if args.sample is not None else output).mkdir(parents=True, exist_ok=True)
        if args.sample is not None:
            write_sample(mnist, args.sample, request_file)
        else:
            write_pictures(mnist, output)
    except OSError as e:
        fail(f"cannot write to {e.filename or output}: {e.strerror or e}")


if __name__ == "__main__":
    main()
