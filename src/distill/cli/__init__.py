"""distill.cli"""
