"""Types digested only through the hooks this package declares as entry points."""

from fleche.digest import Hook, digest


class Atom:
    def __init__(self, symbol, position):
        self.symbol = symbol
        self.position = position


class Molecule:
    def __init__(self, atoms):
        self.atoms = atoms


class Shadowed:
    """Has an entry-point hook; a test adds a hook by hand, which must win."""

    def __init__(self, value):
        self.value = value


def atom_digest(atom):
    return digest((atom.symbol, atom.position))


digest_hooks = [
    Hook(Atom, atom_digest),
    (Molecule, lambda molecule: tuple(molecule.atoms)),
    (Shadowed, lambda shadowed: shadowed.value),
]
