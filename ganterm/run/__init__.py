"""The run directory, torch-free: its layout, its files, and the one recorder that writes them.

Everything a viewer needs lives here, and nothing here imports torch or
`ganterm.training` (tests/test_architecture.py holds that rule), so
`ganterm watch`, `runs` and the control commands start without loading torch.
"""
