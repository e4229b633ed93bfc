
BlogitsJ(¦s<ÀuTæÀˆÞÁuTfÀ=–@Øx5ÀÛ^XÀ>ƒ§¿¨Y_>	˜@