"""Benchmarking: speed and memory of the train steps, and the same networks and updates in
PyTorch (imported only when ``--torch`` asks for it)."""
