"""The live Textual dashboard (`ganterm watch`); never imports torch."""
