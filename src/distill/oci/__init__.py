"""distill.oci"""
