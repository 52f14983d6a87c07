"""The registry protocol and the image model; knows nothing about apps."""
