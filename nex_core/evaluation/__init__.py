"""Held-out evaluation: image metrics (PSNR, SSIM, LPIPS) and the per-run evaluation that writes them."""
