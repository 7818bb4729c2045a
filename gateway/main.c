/*
 * main.c: the deletion-gateway command line.
 */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("deletion-gateway %s\n", DG_VERSION);
        return 0;
    }
    fprintf(stderr, "usage: deletion-gateway --version\n");
    return 2;
}
