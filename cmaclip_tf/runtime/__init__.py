"""What the library's processes share, free of TensorFlow: atomic file
writes, configs as named JSON files, and TensorFlow's console output."""
