def test_importing_spos_raises_onednn_kernel_cache_unless_the_user_set_it():
    import os
    import subprocess
    import sys

    code = "import os, spos; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "16384"
    env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "2048"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "2048"
