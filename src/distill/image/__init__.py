"""distill.image"""
