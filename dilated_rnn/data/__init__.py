"""Data: the one split type, MNIST, a user's files and the archive sets, the copy task, input normalization."""
