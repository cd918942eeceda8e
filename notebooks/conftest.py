"""Run by pytest (nbmake), the notebooks train briefly; opened in Jupyter, their full budget."""

import os

os.environ.setdefault("ZOO_NOTEBOOK_EPOCHS", "3")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
