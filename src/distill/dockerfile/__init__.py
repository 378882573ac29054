"""distill.dockerfile"""
