"""What the tests share that is not a test: imported as `from support import exercise_helpers`
(pytest puts tests/ on sys.path); `ci`, which loads the tools in .ci/ that the book's tests run;
and the DDP worker that `test_ddp.py` runs under torchrun."""
