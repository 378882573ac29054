"""distill.builder"""
