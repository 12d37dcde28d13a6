"""sources/switchbot"""
