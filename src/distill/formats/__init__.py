"""distill.formats"""
